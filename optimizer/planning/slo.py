"""The SLO model of a plan: as many requests as possible able to meet their latency targets.

Data as in `optimizer.planning.latency`, plus each request's targets (`ttft_target_s`,
`e2e_target_s`; none = always met). On replica kind k request j tolerates a wait of

    tau_jk = min(ttft_target_j - prefill_jk, e2e_target_j - latency_jk)

before it starts (its own prefill and its own latency at B* are the rest of each figure).

Share that can meet its targets, for an assignment (what slo plans are scored by): with
Q_j the fluid queueing delay of `optimizer.planning.latency` on j's replica,

    S = #{ j : Q_j <= tau_{j k(j)} } / n

SLO MIP over the class model (class c: N_c members, tau_ck the least tolerance of its
members, in bucket b(c)); Q_kb is the fluid backlog of a kind-k replica at the end of
bucket b, g_ck = 1 when class c's requests on kind k wait no longer than they tolerate::

    min M = n - sum z_ck                                  (requests that miss)
    s.t. sum_{k in E_c} n_ck = N_c                                          for all c
         Q_kb >= Q_k,b-1 + sum_{c: b(c) = b} W_ck n_ck / m_k - (t_{b+1} - t_b),  Q_kb >= 0
         Q_k,b(c) <= tau_ck + H (1 - g_ck)                                   (H: the longest backlog)
         z_ck <= n_ck,  z_ck <= N_c g_ck
         makespan within MAKESPAN_SLACK of the best heuristic's, as in the latency model
         n_ck, z_ck integer, g_ck in {0, 1}, Q_kb >= 0 (whole milliseconds)

Bound: M >= the LP relaxation's value (the share reported is n - M over n, so the bound on
the share is 1 - LP / n). The plan kept is the one with the largest exact S.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.fleet.estimates import Estimates
from optimizer.planning.assignment import from_classes, heuristic
from optimizer.planning.backends import RELATIVE_GAP, Progress, lp_relaxation, solve_model
from optimizer.planning.formulation import LinearModel, estimated_makespan, make_classes
from optimizer.planning.latency import MAKESPAN_SLACK, ROW_RESOLUTION_S

MS = ROW_RESOLUTION_S


def tolerances(requests: pd.DataFrame, estimates: Estimates) -> np.ndarray:
    """tau_jk of the module docstring (requests x kinds; inf without targets, -inf where ineligible)."""
    tolerance = np.full(estimates.work_s.shape, np.inf)
    if "ttft_target_s" in requests:
        target = requests["ttft_target_s"].to_numpy(dtype=float)[:, None]
        tolerance = np.minimum(tolerance, np.where(np.isnan(target), np.inf, target - estimates.prefill_s))
    if "e2e_target_s" in requests:
        target = requests["e2e_target_s"].to_numpy(dtype=float)[:, None]
        tolerance = np.minimum(tolerance, np.where(np.isnan(target), np.inf, target - estimates.latency_s))
    return np.where(estimates.eligible, tolerance, -np.inf)


def waits(assignment: np.ndarray, estimates: Estimates) -> np.ndarray:
    """Q_j: the fluid queueing delay each request finds on its replica (first come, first served)."""
    rows = np.arange(len(assignment))
    work = estimates.work_s[rows, estimates.kind_of_replica[assignment]]
    order = np.lexsort((rows, estimates.arrival_s, assignment))
    wait = np.zeros(len(assignment))
    backlog, previous, current = 0.0, 0.0, -1
    for j in order.tolist():
        if assignment[j] != current:
            current, backlog, previous = assignment[j], 0.0, estimates.arrival_s[j]
        backlog = max(0.0, backlog - (estimates.arrival_s[j] - previous))
        wait[j] = backlog
        backlog += work[j]
        previous = estimates.arrival_s[j]
    return wait


def met_share(assignment: np.ndarray, estimates: Estimates, tolerance: np.ndarray) -> float:
    """S of the module docstring."""
    rows = np.arange(len(assignment))
    return float(np.mean(waits(assignment, estimates) <= tolerance[rows, estimates.kind_of_replica[assignment]])) if len(rows) else 1.0


@dataclass(frozen=True)
class SloPlan:
    assignment: np.ndarray
    share: float
    share_bound: float
    makespan_s: float
    backend_status: str
    wall_clock_cut: bool = False
    message: str = ""


def slo_model(estimates: Estimates, classes, tolerance: np.ndarray, incumbent: np.ndarray, cap_s: float, missing_hint: float) -> tuple[LinearModel, np.ndarray]:
    model = LinearModel()
    num_classes, num_kinds = classes.work_s.shape
    n_total = int(classes.count.sum())
    m = estimates.num_replicas_of_kind.astype(float)
    hint_counts = np.zeros((num_classes, num_kinds))
    np.add.at(hint_counts, (classes.of_request, estimates.kind_of_replica[incumbent]), 1)
    # M = how many requests miss their targets.
    model.objective = model.add_var("M", 0.0, float(n_total), False, missing_hint)
    # n[c, k] = how many requests of class c run on kind k.
    n = -np.ones((num_classes, num_kinds), dtype=np.int64)
    for c, k in zip(*np.nonzero(np.isfinite(classes.work_s))):
        n[c, k] = model.add_var(f"n[{c},{k}]", 0, classes.count[c], True, hint_counts[c, k])
    for c in range(num_classes):
        model.add_row(n[c][n[c] >= 0], np.ones(int((n[c] >= 0).sum())), classes.count[c], classes.count[c])
    # Least tolerance of each class on each kind, in whole milliseconds.
    tau = np.full((num_classes, num_kinds), np.inf)
    np.minimum.at(tau, classes.of_request, tolerance)
    thresholds = classes.thresholds
    ends = np.r_[thresholds[1:], np.max(estimates.arrival_s)]
    ends = np.where(np.isfinite(ends), ends, np.max(estimates.arrival_s))
    longest = float(np.nansum(np.where(np.isfinite(classes.work_s), classes.work_s, 0.0) * classes.count[:, None]) / MS) + 1
    z_terms = []
    for k in range(num_kinds):
        q_prev = None
        for b in range(len(thresholds)):
            # Q[k, b] = the fluid backlog of a kind-k replica at the end of bucket b (ms).
            q = model.add_var(f"Q[{k},{b}]", 0, longest, True, 0.0)
            members = np.flatnonzero((n[:, k] >= 0) & (classes.bucket == b))
            coef = np.round(classes.work_s[members, k] / m[k] / MS)
            gap = np.round(max(ends[b] - thresholds[b], 0.0) / MS) if np.isfinite(thresholds[b]) else 0.0
            index = np.r_[n[members, k], q] if q_prev is None else np.r_[n[members, k], q, q_prev]
            model.add_row(index, np.r_[coef, -1.0] if q_prev is None else np.r_[coef, -1.0, 1.0], -np.inf, gap)
            for c in members.tolist():
                if tau[c, k] == np.inf:
                    z = model.add_var(f"z[{c},{k}]", 0, classes.count[c], True, hint_counts[c, k])
                    model.add_row([z, n[c, k]], [1.0, -1.0], -np.inf, 0.0)
                    z_terms.append(z)
                elif tau[c, k] >= 0:
                    g = model.add_var(f"g[{c},{k}]", 0, 1, True, 0.0)
                    z = model.add_var(f"z[{c},{k}]", 0, classes.count[c], True, 0.0)
                    model.add_row([q, g], [1.0, longest], -np.inf, np.floor(tau[c, k] / MS) + longest)
                    model.add_row([z, n[c, k]], [1.0, -1.0], -np.inf, 0.0)
                    model.add_row([z, g], [1.0, -float(classes.count[c])], -np.inf, 0.0)
                    z_terms.append(z)
            # The makespan stays within the cap.
            later = np.flatnonzero((n[:, k] >= 0) & (classes.bucket >= b))
            if len(later) and np.isfinite(thresholds[b]):
                model.add_row(n[later, k], np.round(classes.work_s[later, k] / m[k] / MS), -np.inf,
                              np.floor((cap_s - thresholds[b] - estimates.drain_s[k]) / MS))
            q_prev = q
    # M >= n - sum z: the requests that miss.
    model.add_row(np.r_[model.objective, z_terms].astype(np.int64), np.r_[1.0, np.ones(len(z_terms))], float(n_total), np.inf)
    return model, n


def optimize_slo(requests: pd.DataFrame, estimates: Estimates, *, solver: str, deterministic_limit_s: float, time_limit_s: float,
                 seed: int = 0, num_workers: int = 8, progress: Progress | None = None, wall_clock_cap: bool = True) -> SloPlan:
    """The plan meeting the most targets within MAKESPAN_SLACK of the best heuristic makespan."""
    tolerance = tolerances(requests, estimates)
    work = np.where(estimates.eligible, estimates.work_s, np.inf)
    candidates = [heuristic(name, work, estimates) for name in ("least-loaded", "lpt", "round-robin")]
    makespans = [estimated_makespan(a, estimates)[0] for a in candidates]
    cap = min(makespans) * (1 + MAKESPAN_SLACK)
    shares = [met_share(a, estimates, tolerance) for a in candidates]
    first = min((i for i in range(len(candidates)) if makespans[i] <= cap), key=lambda i: (-shares[i], makespans[i], i))
    best, best_share, best_makespan = candidates[first], shares[first], makespans[first]
    bound, status, cut, message = 1.0, "NOT_RUN", False, ""
    n_total = len(requests)
    if best_share < 1.0 and deterministic_limit_s > 0 and n_total:
        classes = make_classes(estimates)
        model, n = slo_model(estimates, classes, tolerance, best, cap, n_total * (1 - best_share))
        bound = 1 - max(lp_relaxation(model), 0.0) / n_total
        found = solve_model(model, solver, time_limit_s=max(time_limit_s, 0.05), deterministic_limit_s=deterministic_limit_s,
                            num_workers=num_workers, seed=seed, progress=progress, relative_gap=RELATIVE_GAP, wall_clock_cap=wall_clock_cap)
        status, cut, message = found.status, found.wall_clock_cut, found.message
        if found.values is not None:
            assignment = from_classes(found.values, n, classes, work, estimates)
            makespan, share = estimated_makespan(assignment, estimates)[0], met_share(assignment, estimates, tolerance)
            if makespan <= cap and (-share, makespan) < (-best_share, best_makespan):
                best, best_share, best_makespan = assignment, share, makespan
    return SloPlan(best, best_share, max(bound, best_share), best_makespan, status, cut, message)
