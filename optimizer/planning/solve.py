"""The planning facade: `solve(requests, cluster, solver=..., time_limit_s=...) -> Result`.

Costs come from the calibrated performance model (`optimizer.fleet.estimates`). Every method
assigns each request to a replica that serves its model and can hold it, and is scored by
the estimated makespan of `optimizer.planning.formulation`, reported against the lower bounds of
`optimizer.planning.bounds`.

With a solver backend (cp-sat, scip, cbc) the planner:

1. starts from the best of the heuristic plans (LPT / earliest finish, least-loaded in
   arrival order, round-robin), which bounds the makespan from above and hints every
   variable;
2. solves the per-request MIP when there are few requests per replica (where exact
   packing beats greedy rules), else the class MIP, which decides how
   many requests of each cost class each replica kind runs (the mixed-fleet split where
   greedy rules lose most), and spreads each kind's share over its replicas by LPT;
3. keeps whichever plan, the solver's or the incumbent, has the smaller exact makespan:
   never worse than the incumbent.

Each replica runs its requests longest first in an offline batch (long decode chains must
start early) and in arrival order otherwise; `optimizer.planning.timeline` turns that order into
planned start and end times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.fleet.cluster import Cluster
from optimizer.fleet.estimates import Estimates, estimate, planning_lengths
from optimizer.fleet.profile import Profile
from optimizer.planning.backends import (
    RELATIVE_GAP,
    Progress,
    available_backends,
    lp_relaxation,
    solve_model,
)
from optimizer.planning import identical, prefix_plan
from optimizer.traces.prefixes import has_prefixes
from optimizer.planning.bounds import Bounds, lower_bounds
from optimizer.planning import latency, slo
from optimizer.planning.formulation import (
    class_model,
    estimated_makespan,
    make_classes,
    per_request_model,
)
from optimizer.planning.assignment import from_classes, from_per_request, heuristic
from optimizer.planning.timeline import replica_times

#: Heuristic planning methods by name.
HEURISTICS: dict[str, str] = {
    "lpt": "longest work first to the replica where it finishes earliest (LPT; earliest finish on mixed fleets)",
    "least-loaded": "in arrival order, each request to the replica where it finishes earliest",
    "round-robin": "each request to the next replica that can run it",
}
#: "auto" solves one Boolean per (request, replica) only for at most this many pairs and
#: this many requests per replica: where few requests share a replica, the exact packing
#: matters; with many, the split between replica kinds does and the class MIP finds it.
PER_REQUEST_LIMIT = 20_000
PER_REQUEST_MAX_PER_REPLICA = 10
FORMULATIONS = ("auto", "per-request", "class")
#: What a plan optimises: "makespan" (`optimizer.planning.formulation`), "latency" (the
#: largest fluid queueing delay, `optimizer.planning.latency`), "slo" (the share of requests
#: that can meet their targets, `optimizer.planning.slo`); "auto" is makespan for an
#: offline batch and latency when requests arrive over time.
OBJECTIVES = ("auto", "makespan", "latency", "slo")
#: Share of the time limit given to CP-SAT as deterministic work units (about seconds);
#: the rest is headroom so that the wall-clock cap rarely cuts the search first.
DETERMINISTIC_SHARE = 0.3
#: CPU seconds per request of everything in planning but the solver (estimates, bounds,
#: heuristic incumbents, model, extraction, timing), measured on this 2-core machine at 1M
#: requests on 8 replicas (about 18 us; see benchmarks/time_limits.py). The solver's
#: deterministic budget is its share of the limit, or what 90% of the limit leaves after
#: this cost if less: a function of the limit and the input's size, never of the clock,
#: so the plan does not depend on the machine's load.
SETUP_S_PER_REQUEST = 20e-6
#: Of which the part after the solver (extraction and timing): its wall-clock cap ends early
#: enough to leave time for it.
FINISH_S_PER_REQUEST = 4e-6
#: CP-SAT's deterministic work units per wall second on a class model: 0.15-0.4 measured on
#: this 2-core machine (about 1 on the per-request and bin-packing models), so the class
#: model's budget is this fraction of the seconds set aside for the solver.
CLASS_WORK_PER_S = 0.5
#: Below this many work units the solver is not started (the time limit is spent elsewhere).
MIN_DETERMINISTIC_S = 0.05
#: Beyond this many requests of an offline batch, only LPT makes the incumbent: list
#: scheduling in file order (least-loaded) and round-robin never beat it there, and each
#: costs seconds at a million requests.
ALL_HEURISTICS_MAX_REQUESTS = 100_000


def solvers() -> dict[str, str]:
    """Every planning method available here: solver backends first, then heuristics."""
    return {**available_backends(), **HEURISTICS}


@dataclass(frozen=True)
class Result:
    """A plan and how it was obtained. A time limit is a status here, never an exception.

    status: OPTIMAL (the makespan equals a proven lower bound), FEASIBLE (a plan, not
    proven optimal), HEURISTIC (from a heuristic method).
    """

    plan: pd.DataFrame
    solver: str
    status: str
    #: Estimated makespan of the plan (seconds), as defined in `optimizer.planning.formulation`.
    objective: float
    #: The best proven lower bound on the makespan (seconds).
    lower_bound: float
    bounds: Bounds
    solve_time_s: float
    #: Estimated makespan of the heuristic incumbent the solver started from.
    incumbent: float
    formulation: str = ""
    backend_status: str = ""
    #: True when the wall-clock limit stopped the solver before its deterministic budget:
    #: the plan may then differ between runs on a loaded machine.
    wall_clock_cut: bool = False
    #: One line on what went wrong in the solver (the plan is then the incumbent), else "".
    message: str = ""
    #: The objective the plan optimised (OBJECTIVES, "auto" resolved), its value and a
    #: bound on it: seconds of largest queueing delay (latency), share of requests that
    #: can meet their targets (slo), or the estimated makespan again (makespan).
    objective_name: str = "makespan"
    score: float = float("nan")
    score_bound: float = float("nan")

    @property
    def gap(self) -> float:
        """Relative distance to the lower bound: objective / lower_bound - 1."""
        return self.objective / self.lower_bound - 1 if self.lower_bound > 0 else float("nan")

    @property
    def ratio_to_bound(self) -> float:
        return self.objective / self.lower_bound if self.lower_bound > 0 else float("nan")


def solve(
    requests: pd.DataFrame,
    cluster: Cluster,
    *,
    solver: str = "cp-sat",
    time_limit_s: float = 10.0,
    formulation: str = "auto",
    seed: int = 0,
    num_workers: int = 8,
    profiles: dict[tuple[str, str, int], Profile] | None = None,
    progress: Progress | None = None,
    deterministic: bool = False,
    objective: str = "auto",
    prefix_cache: bool = True,
) -> Result:
    """Assign every request to a replica, order each replica's requests and time them.

    Args:
        solver: a backend of `available_backends()` or a heuristic of `HEURISTICS`.
        time_limit_s: wall-clock budget of the whole call, model building included.
        formulation: "per-request", "class", or "auto" (per-request when small).
        seed, num_workers: passed to the solver (CP-SAT interleaves its workers on one
            thread, so the same inputs and seed give the same plan).
        progress: called with (incumbent, bound, elapsed) as the solver improves.
        deterministic: never let the wall clock stop the solver (it stops on its
            deterministic work budget only, which may take longer than the limit on a
            loaded machine); by default the limit is also a wall-clock cap, and
            `Result.wall_clock_cut` says when it, not the budget, stopped the solver.
        objective: one of OBJECTIVES. Heuristic solvers ignore it (their plan is scored by it).
        prefix_cache: plan for replicas that reuse shared prompt prefixes, by prefix group
            (`optimizer.planning.prefix_plan`), when the trace declares them and a solver
            backend plans; False plans as if nothing were reused.

    Raises:
        OptimizerError: for an unknown solver or formulation, a time limit <= 0, a model no
            replica serves, a request no KV cache holds, or requests without output lengths.
    """
    started = time.perf_counter()
    check_options(solver, formulation, time_limit_s)
    if objective not in OBJECTIVES:
        raise OptimizerError(f"Unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}.")
    if objective == "auto":
        objective = "makespan" if bool((requests["arrival_s"] == requests["arrival_s"].iloc[0]).all()) else "latency"
    # Issue 16 hook: traces that declare shared prefixes are planned by prefix group.
    if prefix_cache and has_prefixes(requests) and prefix_plan.applies(requests, cluster, solver):
        return prefix_plan.solve_prefix_aware(requests, cluster, solver=solver, time_limit_s=time_limit_s, seed=seed,
                                              num_workers=num_workers, profiles=profiles, deterministic=deterministic)
    output = planning_lengths(requests)
    estimates = estimate(requests, cluster, output, profiles=profiles)
    bounds = lower_bounds(estimates)
    found = optimize(
        estimates,
        bounds.best_s,
        solver=solver,
        time_limit_s=time_limit_s,
        started=started,
        formulation=formulation,
        seed=seed,
        num_workers=num_workers,
        progress=progress,
        deterministic=deterministic,
        objective=objective,
        requests=requests,
    )
    plan = timed_plan(requests, cluster, estimates, found.assignment, output)
    return Result(
        plan,
        solver,
        found.status,
        found.objective,
        found.lower_bound,
        bounds,
        time.perf_counter() - started,
        found.incumbent,
        found.formulation,
        found.backend_status,
        found.wall_clock_cut,
        found.message,
        objective,
        found.score,
        found.score_bound,
    )


def check_options(solver: str, formulation: str, time_limit_s: float) -> None:
    valid = solvers()
    if solver not in valid:
        raise OptimizerError(f"Unknown solver {solver!r}; choose one of: {', '.join(valid)}.")
    if formulation not in FORMULATIONS:
        raise OptimizerError(f"Unknown formulation {formulation!r}; choose one of: {', '.join(FORMULATIONS)}.")
    if not time_limit_s > 0:
        raise OptimizerError(f"The time limit must be greater than 0 seconds, got {time_limit_s:g}.")


@dataclass(frozen=True)
class Optimized:
    """What `optimize` found: an assignment and its certificate."""

    assignment: np.ndarray
    status: str
    objective: float
    lower_bound: float
    incumbent: float
    formulation: str
    backend_status: str
    wall_clock_cut: bool = False
    message: str = ""
    score: float = float("nan")
    score_bound: float = float("nan")


def optimize(
    estimates: Estimates,
    lower_bound: float,
    *,
    solver: str,
    time_limit_s: float,
    started: float | None = None,
    formulation: str = "auto",
    seed: int = 0,
    num_workers: int = 8,
    progress: Progress | None = None,
    deterministic: bool = False,
    relative_gap: float | None = None,
    objective: str = "makespan",
    requests: pd.DataFrame | None = None,
) -> Optimized:
    """The planner of the module docstring on per-request estimates (any kind of jobs).

    The time limit counts from `started` (a `time.perf_counter()` value; default now).
    The solver gets DETERMINISTIC_SHARE of the limit as deterministic work, less what the
    rest of planning is expected to cost at this size (SETUP_S_PER_REQUEST); its
    wall-clock cap (none if `deterministic`) leaves FINISH_S_PER_REQUEST per request for
    extraction and timing.
    """
    started = time.perf_counter() if started is None else started
    work = np.where(estimates.eligible, estimates.work_s, np.inf)
    if solver in HEURISTICS:
        assignment = heuristic(solver, work, estimates)
        makespan = estimated_makespan(assignment, estimates)[0]
        status = "OPTIMAL" if makespan <= lower_bound * (1 + 1e-9) and objective == "makespan" else "HEURISTIC"
        score, score_bound = makespan, lower_bound
        if objective == "latency":
            score, score_bound = latency.queueing_delay(assignment, estimates), 0.0
        elif objective == "slo":
            score, score_bound = slo.met_share(assignment, estimates, slo.tolerances(requests, estimates)), 1.0
        return Optimized(assignment, status, makespan, lower_bound, makespan, "", "", score=score, score_bound=score_bound)
    budget = min(DETERMINISTIC_SHARE * time_limit_s, 0.9 * time_limit_s - SETUP_S_PER_REQUEST * len(work))
    if objective in ("latency", "slo"):  # over the class model, within 1% of the best makespan
        remaining = time_limit_s - (time.perf_counter() - started) - FINISH_S_PER_REQUEST * len(work)
        options = dict(solver=solver, deterministic_limit_s=CLASS_WORK_PER_S * budget if budget >= MIN_DETERMINISTIC_S else 0.0,
                       time_limit_s=remaining, seed=seed, num_workers=num_workers, progress=progress, wall_clock_cap=not deterministic)
        if objective == "slo":
            found = slo.optimize_slo(requests, estimates, **options)
            score, bound, better = found.share, found.share_bound, found.share >= found.share_bound - 1e-9
        else:
            found = latency.optimize_latency(estimates, **options)
            score, bound, better = found.delay_s, found.delay_bound_s, found.delay_s <= found.delay_bound_s * (1 + 1e-6)
        return Optimized(found.assignment, "OPTIMAL" if better else "FEASIBLE", found.makespan_s, lower_bound, found.makespan_s,
                         "class", found.backend_status, found.wall_clock_cut, found.message, score, bound)

    names = list(HEURISTICS)
    if len(work) > ALL_HEURISTICS_MAX_REQUESTS and np.all(estimates.arrival_s == estimates.arrival_s[0]):
        names = ["lpt"]
    candidates = [heuristic(name, work, estimates) for name in names]
    scores = [estimated_makespan(a, estimates)[0] for a in candidates]
    incumbent, upper = candidates[int(np.argmin(scores))], min(scores)
    chosen = formulation
    if chosen == "auto":
        n, m = work.shape[0], len(estimates.kind_of_replica)
        chosen = "per-request" if n <= PER_REQUEST_MAX_PER_REPLICA * m and n * m <= PER_REQUEST_LIMIT else "class"

    best, best_score, backend_status, proven = incumbent, upper, "NOT_RUN", lower_bound
    cut, message = False, ""
    # (budget: the solver's share, or less when the rest of planning at this size would not leave it.)
    if budget < MIN_DETERMINISTIC_S:
        message = f"The time limit leaves no time for the {solver} solver on {len(work):,} requests; the plan is the heuristic incumbent."
    elif upper > lower_bound * (1 + 1e-9) and chosen == "per-request" and solver == "cp-sat" and identical.applies(estimates):
        # Identical replicas, offline: P||Cmax, solved by the exact core.
        found = identical.plan_identical(
            estimates, deterministic_limit_s=budget,
            time_limit_s=None if deterministic else max(time_limit_s - (time.perf_counter() - started) - FINISH_S_PER_REQUEST * len(work), 0.05),
            seed=seed, num_workers=num_workers, progress=progress,
        )
        backend_status, cut, message = "EXACT", found.wall_clock_cut, found.message
        score = estimated_makespan(found.assignment, estimates)[0]
        if score < best_score:
            best, best_score = found.assignment, score
        proven = max(proven, min(found.lower_bound_s, best_score))
    elif upper > lower_bound * (1 + 1e-9):  # otherwise the incumbent is already optimal
        if chosen == "per-request":
            model, x = per_request_model(estimates, incumbent, lower_bound, upper)
        else:
            classes = make_classes(estimates)
            model, n = class_model(estimates, classes, incumbent, lower_bound, upper)
            # The LP relaxation bounds the class model's C (drains included) far better than
            # the physical bound, so solvers can stop as soon as they are near it.
            relaxed = lp_relaxation(model)
            model.lower[model.objective] = min(max(model.lower[model.objective], relaxed * (1 - 1e-9)), upper)
        remaining = time_limit_s - (time.perf_counter() - started) - FINISH_S_PER_REQUEST * len(work)
        found = solve_model(
            model,
            solver,
            time_limit_s=max(remaining, 0.05),
            # From the caller's limit and the input's size, not from what remains, so that
            # the work done does not depend on how long the set-up took on this run.
            deterministic_limit_s=budget if chosen == "per-request" else CLASS_WORK_PER_S * budget,
            num_workers=num_workers,
            seed=seed,
            progress=progress,
            relative_gap=RELATIVE_GAP if relative_gap is None else relative_gap,
            wall_clock_cap=not deterministic,
        )
        backend_status, cut, message = found.status, found.wall_clock_cut, found.message
        if found.status == "FAILED":
            message = f"The {solver} solver failed ({found.message}); the plan is the heuristic incumbent."
        if found.values is not None:
            if chosen == "per-request":
                assignment = from_per_request(found.values, x)
            else:
                assignment = from_classes(found.values, n, classes, work, estimates)
            score = estimated_makespan(assignment, estimates)[0]
            if score < best_score:
                best, best_score = assignment, score
        if chosen == "per-request" and np.isfinite(found.bound):
            # A valid bound on the makespan: the model only relaxes release constraints.
            proven = max(proven, min(found.bound, best_score))
    # 1e-6: solvers report values to about that precision (CBC to 8 digits).
    status = "OPTIMAL" if best_score <= proven * (1 + 1e-6) else "FEASIBLE"
    return Optimized(best, status, best_score, proven, upper, chosen, backend_status, cut, message, best_score, proven)


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
    # With arrivals a replica admits a request at once while it runs fewer than B_cap (its
    # batch is below B* only for want of requests), so admissions wait for B_cap slots.
    admit = slots if offline or estimates.batch_cap is None else estimates.batch_cap[estimates.kind_of_replica]
    decode = np.maximum(
        slots[assignment] * (estimates.work_s[rows_all, kind] - prefill),
        estimates.min_latency_s[rows_all, kind] - prefill,
    )
    # Lexsort keys, last is primary: replica, then the longest decode first in an offline
    # batch (LPT over the replica's slots: long chains must start early), else arrival.
    within = -decode if offline else arrival
    rows = np.lexsort((rows_all, within, assignment))
    replica = assignment[rows]
    start, end = replica_times(replica, arrival[rows], prefill[rows], decode[rows], admit)
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
