"""Dispatch policies: which replica an arriving request goes to.

Each is a small class with `choose(row, engines, now) -> replica index`, looking only at
replicas that can run the request (its model, a KV cache that holds it) and have not
failed, and `queue_key(row)`, its place in that replica's waiting queue.

- ``plan``: the replica and order of a plan (CSV from `solve`), followed blindly; a
  request planned for a failed replica goes to the live one with the fewest outstanding
  requests.
- ``round-robin``: the next eligible replica in turn.
- ``least-outstanding``: the eligible replica with the fewest waiting and running requests.
- ``least-work``: the eligible replica with the least remaining estimated work.
- ``random``: a uniformly random eligible replica (seeded).
- ``cache-affinity``: SGLang's cache-aware router, the longest cached prefix unless the
  load is imbalanced (`optimizer.serving.affinity`).
- ``repair``: the plan, repaired online where reality deviates from it (`Repair`).
Ties go to the lowest replica index.
"""

from __future__ import annotations

from optimizer.common.errors import OptimizerError
from optimizer.serving.affinity import CacheAffinity
from optimizer.serving.predictor import LengthBelief
from optimizer.serving.repairer import Repair
from optimizer.serving.rules import (
    FollowPlan,
    LeastOutstanding,
    LeastWork,
    Random,
    RoundRobin,
)

DISPATCHERS = ("plan", "round-robin", "least-outstanding", "least-work", "random", "repair", "cache-affinity")


def make_dispatcher(name: str, requests, cluster, estimates, *, plan=None, seed: int = 0, options=None, belief=None):
    if name not in DISPATCHERS:
        raise OptimizerError(f"Unknown dispatch policy {name!r}; choose one of: {', '.join(DISPATCHERS)}.")
    if options and name not in ("repair", "cache-affinity"):
        raise OptimizerError(f"Dispatch policy {name!r} has no options; only repair ({', '.join(Repair.options)}) and "
                             f"cache-affinity ({', '.join(CacheAffinity.options)}) have.")
    if name in ("plan", "repair"):
        if plan is None:
            raise OptimizerError(f"Dispatch {name!r} needs a plan (--plan plan.csv).")
        if name == "repair":
            return Repair(requests, cluster, estimates, plan, belief or LengthBelief.exact(), **(options or {}))
        return FollowPlan(requests, cluster, estimates, plan)
    if plan is not None:
        raise OptimizerError(f"A plan was given but dispatch is {name!r}; use --dispatch plan or repair to follow it.")
    classes = {"round-robin": RoundRobin, "least-outstanding": LeastOutstanding, "least-work": LeastWork}
    if name == "random":
        return Random(requests, cluster, estimates, seed=seed)
    if name == "cache-affinity":
        return CacheAffinity(requests, cluster, estimates, **(options or {}))
    return classes[name](requests, cluster, estimates)
