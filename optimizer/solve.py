"""The planning facade: `solve(requests, cluster, solver=...) -> Result`.

Costs come from the calibrated performance model (`optimizer.estimates`): a request's work
on each replica kind, its standalone latency and its KV footprint. A method assigns every
request to a replica that serves its model and can hold it; each replica then runs its
requests longest first in an offline batch (long decode chains must start early)
and in arrival order otherwise, and `optimizer.timeline` turns that order into planned
start and end times. The estimated makespan is the latest planned end, reported against
the lower bounds of `optimizer.bounds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.bounds import Bounds, lower_bounds
from optimizer.cluster import Cluster
from optimizer.errors import OptimizerError
from optimizer.estimates import Estimates, estimate, planning_lengths
from optimizer.heuristics import lpt, round_robin
from optimizer.profile import Profile
from optimizer.timeline import replica_times

#: Planning methods by name.
SOLVERS: dict[str, str] = {
    "lpt": "longest work first to the replica where it finishes earliest (LPT; earliest finish on mixed fleets)",
    "round-robin": "each request to the next replica that can run it",
}


@dataclass(frozen=True)
class Result:
    """A plan and how it was obtained. A time limit is a status here, never an exception."""

    plan: pd.DataFrame
    solver: str
    status: str
    #: Estimated makespan of the plan, seconds.
    objective: float
    bounds: Bounds
    solve_time_s: float

    @property
    def lower_bound(self) -> float:
        return self.bounds.best_s

    @property
    def ratio_to_bound(self) -> float:
        return self.objective / self.lower_bound if self.lower_bound > 0 else float("nan")


def solve(
    requests: pd.DataFrame,
    cluster: Cluster,
    *,
    solver: str = "lpt",
    profiles: dict[tuple[str, str, int], Profile] | None = None,
) -> Result:
    """Assign every request to a replica, order each replica's requests and time them.

    Raises:
        OptimizerError: for an unknown solver, a model no replica serves, a request no
            KV cache holds, or requests without any output length.
    """
    if solver not in SOLVERS:
        raise OptimizerError(f"Unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}.")
    started = time.perf_counter()
    output = planning_lengths(requests)
    estimates = estimate(requests, cluster, output, profiles=profiles)
    bounds = lower_bounds(estimates)
    work = np.where(estimates.eligible, estimates.work_s, np.inf)
    assignment = lpt(work, estimates.kind_of_replica) if solver == "lpt" else round_robin(work, estimates.kind_of_replica)
    plan = timed_plan(requests, cluster, estimates, assignment, output)
    return Result(
        plan=plan,
        solver=solver,
        status="HEURISTIC",
        objective=float(plan["planned_end_s"].max()),
        bounds=bounds,
        solve_time_s=time.perf_counter() - started,
    )


def timed_plan(
    requests: pd.DataFrame, cluster: Cluster, estimates: Estimates, assignment: np.ndarray, output: np.ndarray
) -> pd.DataFrame:
    """Plan rows grouped by replica (cluster order), each replica's requests in run order, timed."""
    offline = bool((requests["arrival_s"] == 0).all())
    arrival = estimates.arrival_s
    rows_all = np.arange(len(requests))
    kind = estimates.kind_of_replica[assignment]
    prefill = estimates.prefill_s[rows_all, kind]
    # Decode time in a slot: B* times the request's share of decode work (so a replica's
    # slots consume exactly its work), and never less than decoding alone takes.
    slots = estimates.batch_size[estimates.kind_of_replica]
    decode = np.maximum(
        slots[assignment] * (estimates.work_s[rows_all, kind] - prefill),
        estimates.min_latency_s[rows_all, kind] - prefill,
    )
    # Lexsort keys, last is primary: replica, then the longest decode first in an offline
    # batch (LPT over the replica's slots: long chains must start early), else arrival.
    within = -decode if offline else arrival
    rows = np.lexsort((rows_all, within, assignment))
    replica = assignment[rows]
    start, end = replica_times(replica, arrival[rows], prefill[rows], decode[rows], slots)
    first = np.r_[0, np.flatnonzero(np.diff(replica)) + 1]
    order = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
    return pd.DataFrame(
        {
            "request_id": requests["request_id"].to_numpy()[rows],
            "replica": np.asarray(cluster.names, dtype=object)[replica],
            "order": order.astype(np.int64),
            "planned_start_s": start,
            "planned_end_s": end,
        }
    )
