"""Few requests on identical replicas: the per-request plan through the exact P||Cmax core.

When every replica is of one kind, every request may run on any of them and all arrive
together (an offline batch), the estimated makespan of `optimizer.planning.formulation`
becomes, with a the common arrival, D the drain and w_j, l_j the request's work and latency::

    C = max( a + D + max_r sum_{j on r} w_j,   max_j (a + l_j) )

The second term does not depend on the assignment, so minimising C is P||Cmax on the works.
The works are scaled to whole units u = max_j w_j / RESOLUTION and rounded down,
p_j = floor(w_j / u): the exact core's bound B on the p_j gives the valid bound
a + D + B u on C (rounding down only shrinks the jobs), and its schedule is scored on the
exact works. The rounding costs at most (jobs on one replica) x u, below 1e-7 of C with
at most PER_REQUEST_MAX_PER_REPLICA jobs per replica.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.fleet.estimates import Estimates
from optimizer.planning.backends import Progress
from optimizer.planning.exact import solve_exact

#: Work of the longest request in whole units.
RESOLUTION = 10**8


@dataclass(frozen=True)
class IdenticalPlan:
    assignment: np.ndarray
    #: A proven lower bound on the estimated makespan (seconds).
    lower_bound_s: float
    wall_clock_cut: bool
    message: str


def applies(estimates: Estimates) -> bool:
    """True for one replica kind that every request may use, all arriving together."""
    return (
        len(estimates.kinds) == 1
        and bool(estimates.eligible.all())
        and bool(np.all(estimates.arrival_s == estimates.arrival_s[0]))
    )


def plan_identical(
    estimates: Estimates,
    *,
    deterministic_limit_s: float,
    time_limit_s: float | None,
    seed: int,
    num_workers: int,
    progress: Progress | None = None,
) -> IdenticalPlan:
    """The exact core of `optimizer.planning.exact` on the scaled works (module docstring)."""
    work = estimates.work_s[:, 0]
    unit = max(float(work.max()), 1e-12) / RESOLUTION
    times = np.floor(work / unit).astype(np.int64)
    offset = float(estimates.arrival_s[0] + estimates.drain_s[0])
    chain = float(np.max(estimates.arrival_s + estimates.latency_s[:, 0]))
    relay = None if progress is None else (lambda upper, lower, elapsed: progress(offset + upper * unit, offset + lower * unit, elapsed))
    found = solve_exact(
        times, len(estimates.kind_of_replica), deterministic_limit_s=deterministic_limit_s,
        time_limit_s=time_limit_s, seed=seed, num_workers=num_workers, progress=relay,
        # Loads up to the longest chain (less the offset) cannot lower C: stop there.
        good_enough=int(np.floor((chain - offset) / unit)),
    )
    return IdenticalPlan(found.assignment, max(offset + found.lower_bound * unit, chain), found.wall_clock_cut, found.message)
