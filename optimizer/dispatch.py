"""Dispatch policies: which replica an arriving request goes to.

Each is a small class with `choose(row, engines) -> replica index`, looking only at
replicas that can run the request (its model, a KV cache that holds it), and
`queue_key(row)`, its place in that replica's waiting queue.

- ``plan``: the replica and order of a plan (CSV from `solve`).
- ``round-robin``: the next eligible replica in turn.
- ``least-outstanding``: the eligible replica with the fewest waiting and running requests.
- ``least-work``: the eligible replica with the least remaining estimated work.
- ``random``: a uniformly random eligible replica (seeded).
Ties go to the lowest replica index.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.cluster import Cluster
from optimizer.errors import OptimizerError
from optimizer.estimates import Estimates
from optimizer.plan import validate_plan


class _Dispatcher:
    def __init__(self, requests: pd.DataFrame, cluster: Cluster, estimates: Estimates):
        # Per (request, kind), looked up through each replica's kind: a (requests x replicas)
        # copy would take gigabytes on large fleets.
        self.kind = estimates.kind_of_replica
        self.eligible_kind = estimates.eligible
        self.work_kind = estimates.work_s
        self.arrival = estimates.arrival_s

    def eligible(self, row: int, replica: int) -> bool:
        return bool(self.eligible_kind[row, self.kind[replica]])

    def work(self, row: int, replica: int) -> float:
        return float(self.work_kind[row, self.kind[replica]])

    def queue_key(self, row: int) -> float:
        return float(self.arrival[row])


class RoundRobin(_Dispatcher):
    def __init__(self, *args):
        super().__init__(*args)
        self.next = 0

    def choose(self, row, engines) -> int:
        m = len(engines)
        for step in range(m):
            r = (self.next + step) % m
            if self.eligible(row, r):
                self.next = r + 1
                return r
        raise AssertionError("estimates guarantee an eligible replica")


class LeastOutstanding(_Dispatcher):
    def choose(self, row, engines) -> int:
        loads = [e.outstanding if self.eligible(row, r) else np.inf for r, e in enumerate(engines)]
        return int(np.argmin(loads))


class LeastWork(_Dispatcher):
    """Remaining work of a replica: estimated work of its waiting requests plus the
    not-yet-generated share of its running ones."""

    def choose(self, row, engines) -> int:
        loads = []
        for r, engine in enumerate(engines):
            if not self.eligible(row, r):
                loads.append(np.inf)
                continue
            waiting = sum(self.work(s.row, r) for s in engine.waiting)
            running = sum(self.work(s.row, r) * (1 - s.generated / s.output) for s in engine.running if s.generated < s.output)
            loads.append(waiting + running + self.work(row, r))
        return int(np.argmin(loads))


class Random(_Dispatcher):
    def __init__(self, *args, seed: int = 0):
        super().__init__(*args)
        self.rng = np.random.default_rng(seed)

    def choose(self, row, engines) -> int:
        return int(self.rng.choice(np.flatnonzero(self.eligible_kind[row][self.kind])))


class FollowPlan(_Dispatcher):
    def __init__(self, requests, cluster, estimates, plan: pd.DataFrame):
        super().__init__(requests, cluster, estimates)
        validate_plan(plan, requests, cluster)
        position = pd.Index(requests["request_id"].astype(str)).get_indexer(plan["request_id"].astype(str))
        self.replica = np.empty(len(requests), dtype=np.int64)
        self.order = np.empty(len(requests))
        self.replica[position] = pd.Index(cluster.names).get_indexer(plan["replica"].astype(str))
        self.order[position] = plan["order"].to_numpy(dtype=float)

    def choose(self, row, engines) -> int:
        return int(self.replica[row])

    def queue_key(self, row: int) -> float:
        return float(self.order[row])


DISPATCHERS = ("plan", "round-robin", "least-outstanding", "least-work", "random")


def make_dispatcher(name: str, requests, cluster, estimates, *, plan=None, seed: int = 0):
    if name not in DISPATCHERS:
        raise OptimizerError(f"Unknown dispatch policy {name!r}; choose one of: {', '.join(DISPATCHERS)}.")
    if name == "plan":
        if plan is None:
            raise OptimizerError("Dispatch 'plan' needs a plan (--plan plan.csv).")
        return FollowPlan(requests, cluster, estimates, plan)
    if plan is not None:
        raise OptimizerError(f"A plan was given but dispatch is {name!r}; use --dispatch plan to follow it.")
    classes = {"round-robin": RoundRobin, "least-outstanding": LeastOutstanding, "least-work": LeastWork}
    if name == "random":
        return Random(requests, cluster, estimates, seed=seed)
    return classes[name](requests, cluster, estimates)
