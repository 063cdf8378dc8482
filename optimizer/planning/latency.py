"""The latency model of a plan: every replica's backlog kept short at every moment.

Data as in `optimizer.planning.formulation` (work w_jk, arrival a_j, classes c with N_c
members and mean works W_ck, kinds k with m_k replicas, arrival buckets b starting at t_b;
t_{B} is the last arrival).

Fluid queueing delay of an assignment (what latency plans are scored by). Replica r serves
its work first come, first served at one second of work per second; the backlog a
request finds when it arrives is its wait before it starts:

    Q_j = max(0, Q_prev + w_prev - (a_j - a_prev))     over r's requests in arrival order
    L   = max_j Q_j                                    the largest queueing delay, seconds

Latency MIP over the class model: minimise D, the largest fluid queueing delay over arrival
buckets and replica kinds, keeping the makespan within `MAKESPAN_SLACK` of the best
heuristic plan's (a latency plan must not buy its delays with a later end)::

    min D
    s.t. sum_{k in E_c} n_ck = N_c                                                  for all c
         sum_{c: b' <= b(c) <= b} W_ck n_ck - m_k D <= m_k (t_{b+1} - t_b')         for all k, b' <= b
         t_b + sum_{c: b(c) >= b} W_ck n_ck / m_k + D_k <= C_max                    for all k, b
         n_ck = 0 where a_c + L_ck > C_max                                           no chain past the cap
         D >= 0,  n_ck integer, y_ck in {0, 1}

The second family is the fluid queue of each kind unrolled (Lindley): the backlog at the
end of bucket b is the largest, over earlier bucket starts b', of the work that arrived
since minus the time since, shared by the kind's m_k replicas. The makespan rows are
written in whole milliseconds (integer coefficients), so every backend reads them alike.
Bound: D >= 0, and D >= the LP relaxation's value, which the solver proves or improves.
The exact delay L of the plan (per replica, not per kind, every arrival) is what is
reported; the class model's D is its fluid bucket-level estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.fleet.estimates import Estimates
from optimizer.planning.assignment import from_classes, heuristic
from optimizer.planning.backends import RELATIVE_GAP, Progress, lp_relaxation, solve_model
from optimizer.planning.formulation import Classes, LinearModel, estimated_makespan, make_classes

#: A latency plan's estimated makespan may exceed the best heuristic makespan by this share.
MAKESPAN_SLACK = 0.01
#: Resolution of the makespan rows of the latency model (seconds).
ROW_RESOLUTION_S = 1e-3


def queueing_delay(assignment: np.ndarray, estimates: Estimates) -> float:
    """L of the module docstring: the largest fluid queueing delay over every request."""
    rows = np.arange(len(assignment))
    work = estimates.work_s[rows, estimates.kind_of_replica[assignment]]
    arrival = estimates.arrival_s
    worst = 0.0
    order = np.lexsort((rows, arrival, assignment))
    replica, arrival, work = assignment[order], arrival[order], work[order]
    starts = np.r_[0, np.flatnonzero(np.diff(replica)) + 1, len(order)]
    for first, last in zip(starts[:-1], starts[1:]):
        backlog, previous = 0.0, -np.inf
        for a, w in zip(arrival[first:last].tolist(), work[first:last].tolist()):
            backlog = max(0.0, backlog - (a - previous)) if previous > -np.inf else 0.0
            worst = max(worst, backlog)
            backlog += w
            previous = a
    return worst


def latency_model(
    estimates: Estimates, classes: Classes, incumbent: np.ndarray, makespan_cap_s: float, delay_upper_s: float
) -> tuple[LinearModel, np.ndarray]:
    """The latency MIP of the module docstring, hinted with `incumbent`; also returns n's
    index per (class, kind)."""
    model = LinearModel()
    num_classes, num_kinds = classes.work_s.shape
    m = estimates.num_replicas_of_kind.astype(float)
    hint_counts = np.zeros((num_classes, num_kinds))
    np.add.at(hint_counts, (classes.of_request, estimates.kind_of_replica[incumbent]), 1)
    # D = the largest fluid queueing delay of a kind's replicas at the end of any bucket.
    model.objective = model.add_var("D", 0.0, max(delay_upper_s, ROW_RESOLUTION_S), False, delay_upper_s)
    # n[c, k] = how many requests of class c run on replicas of kind k.
    n = -np.ones((num_classes, num_kinds), dtype=np.int64)
    for c, k in zip(*np.nonzero(np.isfinite(classes.work_s))):
        n[c, k] = model.add_var(f"n[{c},{k}]", 0, classes.count[c], True, hint_counts[c, k])
    # Every request of a class runs somewhere.
    for c in range(num_classes):
        model.add_row(n[c][n[c] >= 0], np.ones(int((n[c] >= 0).sum())), classes.count[c], classes.count[c])
    thresholds = classes.thresholds
    finite = np.isfinite(thresholds)
    ends = np.r_[thresholds[1:], np.nan]
    last_arrival = float(np.max(estimates.arrival_s))
    ends[-1] = last_arrival
    ends = np.where(np.isfinite(ends), ends, last_arrival)
    for k in range(num_kinds):
        on_k = n[:, k] >= 0
        for b in range(len(thresholds)):
            if not finite[b]:
                continue
            # The fluid queue of kind k, unrolled: work arrived in buckets b'..b within D of the time since t_b'.
            for first in range(b + 1):
                if not finite[first]:
                    continue
                members = np.flatnonzero(on_k & (classes.bucket >= first) & (classes.bucket <= b))
                if len(members):
                    model.add_row(np.r_[n[members, k], model.objective], np.r_[classes.work_s[members, k], -m[k]],
                                  -np.inf, m[k] * max(ends[b] - thresholds[first], 0.0))
            # The makespan stays within the cap (whole milliseconds).
            members = np.flatnonzero(on_k & (classes.bucket >= b))
            if len(members):
                coef = np.round(classes.work_s[members, k] / m[k] / ROW_RESOLUTION_S)
                room = np.floor((makespan_cap_s - thresholds[b] - estimates.drain_s[k]) / ROW_RESOLUTION_S)
                model.add_row(n[members, k], coef, -np.inf, room)
    # A class's longest chain ends within the cap on any kind it uses.
    chain = classes.arrival_s[:, None] + classes.latency_s
    for c, k in zip(*np.nonzero((n >= 0) & (chain > makespan_cap_s))):
        model.upper[n[c, k]] = 0.0
    return model, n


@dataclass(frozen=True)
class LatencyPlan:
    """What `optimize_latency` found: the assignment, its exact delay L and estimated
    makespan, the bound on D, and how the solver ended."""

    assignment: np.ndarray
    delay_s: float
    makespan_s: float
    delay_bound_s: float
    incumbent_delay_s: float
    backend_status: str
    wall_clock_cut: bool = False
    message: str = ""


def optimize_latency(
    estimates: Estimates,
    *,
    solver: str,
    deterministic_limit_s: float,
    time_limit_s: float,
    seed: int = 0,
    num_workers: int = 8,
    progress: Progress | None = None,
    wall_clock_cap: bool = True,
) -> LatencyPlan:
    """The least-delay plan within MAKESPAN_SLACK of the best heuristic makespan: the best
    heuristic plan by (L, makespan) as incumbent and hint, then the latency MIP on the
    class model; whichever has the smaller exact L (and a makespan within the cap) wins."""
    work = np.where(estimates.eligible, estimates.work_s, np.inf)
    candidates = [heuristic(name, work, estimates) for name in ("least-loaded", "lpt", "round-robin")]
    makespans = [estimated_makespan(a, estimates)[0] for a in candidates]
    cap = min(makespans) * (1 + MAKESPAN_SLACK)
    delays = [queueing_delay(a, estimates) for a in candidates]
    first = min((i for i in range(len(candidates)) if makespans[i] <= cap), key=lambda i: (delays[i], makespans[i], i))
    best, best_delay, best_makespan = candidates[first], delays[first], makespans[first]
    incumbent_delay, bound, status, cut, message = best_delay, 0.0, "NOT_RUN", False, ""
    if best_delay > 0 and deterministic_limit_s > 0:
        classes = make_classes(estimates)
        model, n = latency_model(estimates, classes, best, cap, best_delay)
        bound = max(lp_relaxation(model), 0.0)
        model.lower[model.objective] = min(bound * (1 - 1e-9), model.upper[model.objective])
        found = solve_model(model, solver, time_limit_s=max(time_limit_s, 0.05), deterministic_limit_s=deterministic_limit_s,
                            num_workers=num_workers, seed=seed, progress=progress, relative_gap=RELATIVE_GAP,
                            wall_clock_cap=wall_clock_cap)
        status, cut, message = found.status, found.wall_clock_cut, found.message
        if found.values is not None:
            assignment = from_classes(found.values, n, classes, work, estimates)
            makespan, delay = estimated_makespan(assignment, estimates)[0], queueing_delay(assignment, estimates)
            if makespan <= cap and (delay, makespan) < (best_delay, best_makespan):
                best, best_delay, best_makespan = assignment, delay, makespan
        if np.isfinite(found.bound):
            bound = max(bound, min(found.bound, best_delay))
    return LatencyPlan(best, best_delay, best_makespan, min(bound, best_delay), incumbent_delay, status, cut, message)
