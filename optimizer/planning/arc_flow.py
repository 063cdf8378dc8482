"""The arc-flow LP relaxation of a bin-packing probe: a cheap, rigorous "no" (Valerio de
Carvalho 1999; Brandao & Pedroso 2016), raising the P||Cmax lower bound of
`optimizer.planning.exact` to the Gilmore-Gomory bound before its CP-SAT probes.

The question of a probe: do jobs with distinct times t_s (c_s jobs of each) fit in m bins
of capacity C? The arc-flow graph (nodes: loads 0..C reachable adding jobs longest first;
an arc (d, d + t_s) for each time that can follow, and a loss arc from every node to the
end) carries one unit of flow per bin. Its LP relaxation::

    min  sum_{a out of 0} f[a]                        bins used
    s.t. flow conserved at every node d > 0
         sum_{a of time t_s} f[a] >= c_s              every job is placed
         f >= 0

equals the Gilmore-Gomory bound, which on random instances almost always rounds up to the
optimal bin count. It is solved by GLOP on a deterministic work limit; its answer is
then certified independently of the LP's tolerances: the duals y_s >= 0 of the job rows,
divided by V = max { sum_s y_s k_s : sum_s t_s k_s <= C, 0 <= k_s <= c_s } (a bounded
knapsack solved exactly by dynamic programming over the loads), are a feasible dual
solution, so every packing needs at least sum_s c_s y_s / V bins (weak duality). When
that exceeds m (by a margin far above rounding errors), C is impossible.
"""

from __future__ import annotations

import numpy as np

#: The LP is built up to this many arcs, and for capacities up to LP_MAX_CAPACITY (its
#: nodes and the knapsack's table are indexed by the loads 0..C).
LP_MAX_ARCS = 150_000
LP_MAX_CAPACITY = 200_000
#: The work charged for a probe (deterministic, in about CPU seconds here): building the
#: model, per arc, and GLOP's simplex iterations, each costing about in proportion to the
#: arcs (measured from 25,000 to 110,000 arcs). GLOP's own deterministic limit stops the LP.
BUILD_WORK_PER_ARC = 5e-6
WORK_PER_ARC_ITERATION = 3.4e-9
#: C is declared impossible only when the certified bin count exceeds m by this much.
MARGIN = 1e-6


def arc_flow_arcs(sizes: np.ndarray, counts: np.ndarray, capacity: int, max_arcs: int) -> list[tuple[int, int, int]] | None:
    """Arcs (tail, head, time index) of the arc-flow graph, longest times first along a path
    (`sizes` ascending); None when there would be more than `max_arcs`."""
    reached = np.zeros(capacity + 1, dtype=bool)
    reached[0] = True
    tails, heads, kinds = [], [], []
    total = 0
    for s_i in range(len(sizes) - 1, -1, -1):  # longest first
        size, count = int(sizes[s_i]), int(counts[s_i])
        if size == 0 or size > capacity:
            continue
        start = np.flatnonzero(reached)
        new = np.zeros_like(reached)
        for k in range(min(count, capacity // size)):
            tail = start + k * size
            tail = tail[tail + size <= capacity]
            if not len(tail):
                break
            # Arcs (d, d + size) from every node reached with at most k jobs of this time.
            total += len(tail)
            if total > max_arcs:
                return None
            tails.append(tail)
            heads.append(tail + size)
            kinds.append(np.full(len(tail), s_i))
            new[tail + size] = True
        reached |= new
    if not tails:
        return []
    arcs = np.unique(np.stack([np.concatenate(tails), np.concatenate(heads), np.concatenate(kinds)], axis=1), axis=0)
    return [tuple(map(int, row)) for row in arcs]


def knapsack_value(sizes: np.ndarray, counts: np.ndarray, values: np.ndarray, capacity: int) -> float:
    """max sum_s values_s k_s with sum_s sizes_s k_s <= capacity and 0 <= k_s <= counts_s
    (values >= 0), by dynamic programming over the loads (binary splitting of the counts)."""
    best = np.zeros(capacity + 1)
    for size, count, value in zip(sizes.tolist(), counts.tolist(), values.tolist()):
        if value <= 0 or size > capacity:
            continue
        if size == 0:
            best += count * value
            continue
        left = min(int(count), capacity // int(size))
        chunk = 1
        while left > 0:
            k = min(chunk, left)
            w = k * int(size)
            shifted = best[:-w] + k * value
            best[w:] = np.maximum(best[w:], shifted)
            left -= k
            chunk *= 2
    return float(best.max())


def lp_probe(times: np.ndarray, m: int, capacity: int, *, work_limit_s: float, max_arcs: int = LP_MAX_ARCS) -> tuple[str, float]:
    """("INFEASIBLE", work) when the certified LP bound of the module docstring refutes
    `capacity`, ("LP_FITS", work) when the LP packs the jobs in m bins (C may still be
    impossible), else ("UNKNOWN", work), with the deterministic work spent."""
    from ortools.linear_solver import pywraplp

    times = np.asarray(times, dtype=np.int64)
    if len(times) and int(times.max()) > capacity:
        return "INFEASIBLE", 0.0
    if capacity > LP_MAX_CAPACITY:
        return "UNKNOWN", 0.0
    sizes, of_job, counts = np.unique(times, return_inverse=True, return_counts=True)
    arcs = arc_flow_arcs(sizes, counts, capacity, max_arcs)
    if arcs is None:
        return "UNKNOWN", 0.0
    solver = pywraplp.Solver.CreateSolver("GLOP")
    solver.SetSolverSpecificParametersAsString(f"max_deterministic_time: {max(work_limit_s, 1e-3)!r}")
    inf = solver.infinity()
    nodes = sorted({b for _, b, _ in arcs})
    flows = [solver.NumVar(0.0, inf, "") for _ in arcs]
    loss = {d: solver.NumVar(0.0, inf, "") for d in nodes}
    balance = {d: solver.Constraint(0.0, 0.0) for d in nodes}
    demand = [solver.Constraint(float(c), inf) if s > 0 else None for s, c in zip(sizes.tolist(), counts.tolist())]
    objective = solver.Objective()
    for var, (a, b, s_i) in zip(flows, arcs):
        if a == 0:
            objective.SetCoefficient(var, 1.0)
        else:
            balance[a].SetCoefficient(var, -1.0)
        balance[b].SetCoefficient(var, 1.0)
        demand[s_i].SetCoefficient(var, 1.0)
    for d, var in loss.items():
        balance[d].SetCoefficient(var, -1.0)
    objective.SetMinimization()
    status = solver.Solve()
    used = min(work_limit_s, len(arcs) * (BUILD_WORK_PER_ARC + solver.iterations() * WORK_PER_ARC_ITERATION))
    if status != pywraplp.Solver.OPTIMAL:
        return "UNKNOWN", used
    duals = np.array([max(row.dual_value(), 0.0) if row is not None else 0.0 for row in demand])
    value = knapsack_value(sizes, counts, duals, capacity)
    if value > 0 and float(counts @ duals) / value > m + MARGIN:
        return "INFEASIBLE", used
    # Not refuted: C is at least the LP's (Gilmore-Gomory) bound; a schedule within C is
    # left to the CP-SAT probes. (Rounding the LP's paths, with the left-over jobs packed
    # by minimum slack or by CP-SAT over the paths as patterns, found none on the benchmark.)
    return "LP_FITS", used


#: An LP probe is started only with at least this much work left.
MIN_LP_WORK = 0.2


def lp_phase(times: np.ndarray, m: int, lower: int, upper: int, budget: float, probes: list, report=None) -> tuple[int, float]:
    """LP probes below `upper` (a makespan reached) to raise `lower`: the LP bound is
    monotone in C, so the first C it does not refute is the rounded-up Gilmore-Gomory bound.
    Probes go at lower, lower + 1, lower + 3, lower + 7, ... (the bound is usually close)
    until one is not refuted, then bisect. Returns the raised bound and the work spent;
    appends (C, status) to `probes` and calls `report(upper, bound, 0)` when it rises."""
    spent, step, fits_at = 0.0, 1, None  # fits_at: a C the LP did not refute
    high = upper
    while lower < high and budget - spent >= MIN_LP_WORK:
        capacity = (lower + high - 1) // 2 if fits_at is not None else min(lower + step - 1, high - 1)
        status, used = lp_probe(times, m, capacity, work_limit_s=budget - spent)
        spent += used
        probes.append((capacity, status))
        if status == "INFEASIBLE":
            lower, step = capacity + 1, 2 * step
            if report is not None:
                report(float(upper), float(lower), 0.0)
        elif status == "LP_FITS":
            fits_at = high = capacity
        else:
            break
    return lower, spent
