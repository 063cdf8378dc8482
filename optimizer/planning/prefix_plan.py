"""The prefix-aware planner: requests sharing a prefix are planned by group, trading reuse against balance.

With the groups of `optimizer.planning.prefix_groups` (group g has N_g members; r_j, s_g,
pi_k as defined there), a replica r of kind k that runs the requests J_r and the groups G_r
(those with a member in J_r) is estimated to finish at

    F_r = sum_{j in J_r} w'_jk + sum_{g in G_r} pi_k s_g + pi_k S_common + D_k,   w'_jk = w_jk - pi_k r_j

(each shared prefix computed once per replica that holds its group; D_k the drain of
`optimizer.planning.formulation`), and C = max(max_r F_r, max_j a_j + l_jk(j)).

Group MIP (a class model whose classes are the groups; requests alone form one class A)::

    min C
    s.t. sum_r n_gr = N_g                                                  for all g, and A
         n_gr <= N_g y_gr                                                  for all g, r
         sum_g (W_gk n_gr + pi_k s_g y_gr) + W_Ak n_Ar + pi_k S_common + D_k <= C   for all r (k = k(r))
         LB <= C <= UB,  n integer, y in {0, 1}

with W_gk the mean w' of g's members on kind k. A group too large for one replica splits,
paying pi_k s_g once more on each replica it reaches. The solver starts from the better of
two incumbents (hinting every variable): the prefix-blind LPT plan and a group-aware list
schedule (groups by decreasing work, each member to the replica where it would finish
earliest counting its group's prefix if the replica does not hold it yet). Counts become
requests by giving each group's members, longest first, to the replica with a count left
that would finish earliest; requests alone likewise. The plan kept is the one with the
least F-makespan (never worse than either incumbent), and the bound is the one with reuse
(`optimizer.planning.reuse`). The MIP sums loads as for an offline batch; plans are scored
with releases (a replica's load after each of its arrivals, as `optimizer.planning.formulation`
does), and on a timed trace the release-aware plans compete too: the blind planner's (given
half the time) and an arrival-order list schedule with prefixes. The blind planner (`optimizer.planning.solve`) plans instead
when nothing can be shared (no group, no common unit), and when the fleet serves several
models (the group MIP does not model eligibility).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.fleet.cluster import Cluster
from optimizer.fleet.estimates import Estimates, estimate, planning_lengths
from optimizer.planning.backends import RELATIVE_GAP, solve_model
from optimizer.planning.bounds import lower_bounds
from optimizer.planning.formulation import LinearModel
from optimizer.planning.heuristics import lpt
from optimizer.planning.prefix_groups import Groups, prefix_groups
from optimizer.planning.reuse import reuse_work
from optimizer.traces.prefixes import prefix_chains, prefix_units

#: Share of the time limit the group MIP may use as deterministic work.
DETERMINISTIC_SHARE = 0.3


@dataclass(frozen=True)
class ReuseCosts:
    """Planning works with reuse (module docstring)."""

    work: np.ndarray  # w'_jk (requests, kinds)
    setup: np.ndarray  # pi_k s_g (groups, kinds)
    common: np.ndarray  # pi_k S_common (kinds,)
    groups: Groups


def reuse_costs(requests: pd.DataFrame, cluster: Cluster, estimates: Estimates) -> ReuseCosts:
    prompt = requests["prompt_tokens"].to_numpy(dtype=float)
    block = cluster.first_of_each_kind[0].limits.block_size_tokens
    groups = prefix_groups(prefix_units(prefix_chains(requests), block), prompt, len(cluster))
    price = estimates.prefill_s.sum(axis=0) / max(prompt.sum(), 1.0)  # pi_k, seconds per prompt token
    work = estimates.work_s - groups.reusable_tokens[:, None] * price[None, :]
    return ReuseCosts(work, groups.shared_tokens[:, None] * price[None, :], groups.common_tokens * price, groups)


def reuse_makespan(assignment: np.ndarray, costs: ReuseCosts, estimates: Estimates) -> float:
    """C of the module docstring, with releases: a replica's load is the latest, over its
    arrivals t, of t + the work arriving at or after t (each group's prefix with the group's
    first member there), as `optimizer.planning.formulation` takes it; all at once in an
    offline batch."""
    kind_of = estimates.kind_of_replica
    rows = np.arange(len(assignment))
    kinds = kind_of[assignment]
    m = len(kind_of)
    work = costs.work[rows, kinds].copy()
    arrival = estimates.arrival_s
    g = costs.groups.of_request
    member = np.flatnonzero(g >= 0)
    if len(member):  # the prefix goes with the first member of the group on each replica
        order = member[np.lexsort((member, arrival[member], assignment[member], g[member]))]
        first = np.r_[True, (g[order][1:] != g[order][:-1]) | (assignment[order][1:] != assignment[order][:-1])]
        work[order[first]] += costs.setup[g[order[first]], kinds[order[first]]]
    finish = np.zeros(m)
    order = np.lexsort((-arrival, assignment))  # by replica, latest arrival first
    replica, suffix = assignment[order], np.cumsum(work[order])
    starts = np.r_[0, np.flatnonzero(np.diff(replica)) + 1]
    suffix -= np.repeat(np.r_[0.0, suffix[starts[1:] - 1]], np.diff(np.r_[starts, len(order)]))
    np.maximum.at(finish, replica, arrival[order] + suffix)
    used = np.bincount(assignment, minlength=m) > 0
    finish += np.where(used, costs.common[kind_of] + estimates.drain_s[kind_of], 0.0)
    chain = float(np.max(arrival + estimates.latency_s[rows, kinds])) if len(rows) else 0.0
    return max(float(finish.max()), chain)


def arrival_schedule(costs: ReuseCosts, estimates: Estimates) -> np.ndarray:
    """For timed traces: requests in arrival order, each to the replica where it would finish
    earliest (it starts no sooner than it arrives), its group's prefix counted where the
    replica does not hold it yet."""
    kind_of = estimates.kind_of_replica
    work = np.where(estimates.eligible, costs.work, np.inf)[:, kind_of]
    g = costs.groups.of_request
    ready = costs.common[kind_of].copy()
    holds: set[tuple[int, int]] = set()
    assignment = np.empty(len(g), dtype=np.int64)
    for j in np.argsort(estimates.arrival_s, kind="stable").tolist():
        setup = np.array([0.0 if g[j] < 0 or (g[j], r) in holds else costs.setup[g[j], kind_of[r]] for r in range(len(ready))])
        after = np.maximum(ready, estimates.arrival_s[j]) + work[j] + setup
        r = int(np.argmin(after))
        ready[r] = after[r]
        assignment[j] = r
        holds.add((int(g[j]), r))
    return assignment


def group_list_schedule(costs: ReuseCosts, estimates: Estimates) -> np.ndarray:
    """The group-aware incumbent of the module docstring: groups (and requests alone) by
    decreasing work, each whole to the replica where it would finish earliest; a group larger
    than a replica's fair share is dealt member by member instead (longest first, each to
    where it finishes earliest, its group's prefix counted where the replica lacks it)."""
    kind_of = estimates.kind_of_replica
    work = np.where(estimates.eligible, costs.work, np.inf)[:, kind_of]  # (requests, replicas)
    chain = (estimates.arrival_s[:, None] + estimates.latency_s)[:, kind_of]
    g = costs.groups.of_request
    n, m = work.shape
    load = costs.common[kind_of] + estimates.drain_s[kind_of]
    best = np.where(np.isfinite(work), work, 0).min(axis=1)
    items: list[np.ndarray] = [costs.groups.members(c) for c in range(costs.groups.num_groups)]
    items += [np.array([j]) for j in np.flatnonzero(g < 0)]
    sizes = np.array([best[rows].sum() for rows in items])
    fair = (best.sum() + costs.setup.min(axis=1).sum()) / m
    assignment = np.empty(n, dtype=np.int64)
    for i in np.lexsort((np.arange(len(items)), -sizes)).tolist():
        rows = items[i]
        setup = costs.setup[g[rows[0]], kind_of] if g[rows[0]] >= 0 else np.zeros(m)
        if sizes[i] <= fair:  # whole, where it finishes earliest (a long decode chain may not fit a slow kind)
            after = load + work[rows].sum(axis=0) + setup
            r = int(np.argmin(np.maximum(after, chain[rows].max(axis=0))))
            load[r] = after[r]
            assignment[rows] = r
            continue
        holds = np.zeros(m, dtype=bool)
        for j in rows[np.argsort(-best[rows], kind="stable")].tolist():
            after = load + work[j] + np.where(holds, 0.0, setup)
            r = int(np.argmin(np.maximum(after, chain[j])))
            load[r] = after[r]
            assignment[j] = r
            holds[r] = True
    return assignment


def group_model(costs: ReuseCosts, estimates: Estimates, incumbent: np.ndarray, lower: float, upper: float):
    """The group MIP, hinted with `incumbent`; returns it with n's and y's indices."""
    kind_of = estimates.kind_of_replica
    groups, m = costs.groups, len(kind_of)
    g = np.where(costs.groups.of_request >= 0, costs.groups.of_request, groups.num_groups)  # alone = class A
    num_classes = groups.num_groups + 1
    count = np.bincount(g, minlength=num_classes)
    mean = np.zeros((num_classes, costs.work.shape[1]))
    np.add.at(mean, g, costs.work)
    mean /= np.maximum(count, 1)[:, None]
    hint = np.zeros((num_classes, m))
    np.add.at(hint, (g, incumbent), 1)
    # A group may go only where each member's own chain fits under the incumbent's makespan.
    chain = np.full((num_classes, costs.work.shape[1]), -np.inf)
    np.maximum.at(chain, g, estimates.arrival_s[:, None] + estimates.latency_s)
    fits = chain[:, kind_of] <= upper
    fits[-1] = True  # requests alone are placed one by one (their chains checked then)
    model = LinearModel()
    # C = the estimated makespan, between the bound and the incumbent.
    model.objective = model.add_var("C", lower, upper, False, upper)
    # n[c, r] = members of class c on replica r; y[g, r] = 1 if group g has a member on r.
    n = np.array([[model.add_var(f"n[{c},{r}]", 0, count[c] * fits[c, r], True, hint[c, r] * fits[c, r]) for r in range(m)] for c in range(num_classes)])
    y = np.array([[model.add_var(f"y[{c},{r}]", 0, int(fits[c, r]), True, float(hint[c, r] > 0) * fits[c, r]) for r in range(m)]
                  for c in range(groups.num_groups)], dtype=np.int64).reshape(groups.num_groups, m)
    # Every member of a class runs somewhere.
    for c in range(num_classes):
        model.add_row(n[c], np.ones(m), count[c], count[c])
    # A group's members run only where the group's prefix is computed.
    for c in range(groups.num_groups):
        for r in range(m):
            model.add_row([n[c, r], y[c, r]], [1.0, -float(count[c])], -np.inf, 0.0)
    # Each replica's work, prefixes once per group it holds, fits in the makespan.
    for r in range(m):
        k = kind_of[r]
        index = np.r_[n[:, r], y[:, r], model.objective]
        coef = np.r_[mean[:, k], costs.setup[:, k], -1.0]
        model.add_row(index, coef, -np.inf, -float(costs.common[k] + estimates.drain_s[k]))
    return model, n, y


def counts_to_assignment(counts: np.ndarray, costs: ReuseCosts, estimates: Estimates) -> np.ndarray:
    """Requests from class counts (module docstring)."""
    kind_of = estimates.kind_of_replica
    g = np.where(costs.groups.of_request >= 0, costs.groups.of_request, costs.groups.num_groups)
    work = costs.work[:, kind_of]
    chain = (estimates.arrival_s[:, None] + estimates.latency_s)[:, kind_of]
    load = costs.common[kind_of] + estimates.drain_s[kind_of]
    left = counts.astype(np.int64).copy()
    assignment = np.empty(len(g), dtype=np.int64)
    for j in np.lexsort((np.arange(len(g)), -work.min(axis=1), g)).tolist():
        finish = np.where(left[g[j]] > 0, np.maximum(load + work[j], chain[j]), np.inf)
        r = int(np.argmin(finish))
        left[g[j], r] -= 1
        load[r] += work[j, r]
        assignment[j] = r
    return assignment


def solve_prefix_aware(requests: pd.DataFrame, cluster: Cluster, *, solver: str, time_limit_s: float, seed: int = 0,
                       num_workers: int = 8, profiles: dict | None = None, deterministic: bool = False):
    """Plan by prefix group (module docstring); a `optimizer.planning.solve.Result`."""
    from optimizer.planning.solve import Result, optimize, solve, timed_plan  # the facade imports this module

    started = time.perf_counter()
    output = planning_lengths(requests)
    estimates = estimate(requests, cluster, output, profiles=profiles)
    costs = reuse_costs(requests, cluster, estimates)
    if not costs.groups.num_groups and not costs.groups.common_tokens:  # nothing any plan can share
        return solve(requests, cluster, solver=solver, time_limit_s=time_limit_s, seed=seed, num_workers=num_workers,
                     profiles=profiles, deterministic=deterministic, prefix_cache=False)
    bounds = lower_bounds(estimates, reuse_work(requests, cluster, estimates, output, profiles=profiles))
    blind = lpt(np.where(estimates.eligible, estimates.work_s, np.inf), estimates.kind_of_replica)
    candidates = [group_list_schedule(costs, estimates), blind]
    if not np.all(estimates.arrival_s == estimates.arrival_s[0]):
        # Timed: the group MIP sees no releases, so the release-aware plans compete too: the
        # blind planner's (with half the time) and an arrival-order list schedule.
        candidates += [arrival_schedule(costs, estimates),
                       optimize(estimates, bounds.best_s, solver=solver, time_limit_s=time_limit_s / 2, seed=seed,
                                num_workers=num_workers, deterministic=deterministic).assignment]
    scores = [reuse_makespan(a, costs, estimates) for a in candidates]
    best, best_score = candidates[int(np.argmin(scores))], min(scores)
    incumbent_score, status, cut, message, backend_status = best_score, "FEASIBLE", False, "", "NOT_RUN"
    if best_score > bounds.best_s * (1 + 1e-9):
        model, n, _ = group_model(costs, estimates, best, bounds.best_s, best_score)
        remaining = time_limit_s - (time.perf_counter() - started)
        found = solve_model(model, solver, time_limit_s=max(remaining * 0.9, 0.05), num_workers=num_workers, seed=seed,
                            deterministic_limit_s=DETERMINISTIC_SHARE * time_limit_s, relative_gap=RELATIVE_GAP,
                            wall_clock_cap=not deterministic)
        cut, message, backend_status = found.wall_clock_cut, found.message, found.status
        if found.values is not None:
            assignment = counts_to_assignment(np.rint(found.values[n]), costs, estimates)
            score = reuse_makespan(assignment, costs, estimates)
            if score < best_score:
                best, best_score = assignment, score
    if best_score <= bounds.best_s * (1 + 1e-6):
        status = "OPTIMAL"
    # Planned times with the reused prefill taken off (a request's own part, at least 0).
    reuse_estimates = dataclasses.replace(
        estimates, work_s=costs.work, prefill_s=np.maximum(estimates.prefill_s - (estimates.work_s - costs.work), 0.0))
    plan = timed_plan(requests, cluster, reuse_estimates, best, output)
    return Result(plan, solver, status, best_score, bounds.best_s, bounds, time.perf_counter() - started,
                  incumbent_score, "prefix-group", backend_status, cut, message)


def applies(requests: pd.DataFrame, cluster: Cluster, solver: str, profiles: dict | None = None) -> bool:
    """True when the group planner takes a trace: a solver backend, and every request able
    to run on every replica (the group MIP does not model eligibility)."""
    from optimizer.planning.solve import HEURISTICS

    if solver in HEURISTICS:
        return False
    models = requests["model"].to_numpy(dtype=object)
    return bool(np.all((models == "") | np.isin(models, list(cluster.models)))) and len(set(cluster.models)) == 1
