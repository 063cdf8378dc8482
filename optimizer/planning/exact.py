"""An exact P||Cmax core: binary search on the makespan, each step a bin-packing question.

For whole-number times p_j on m identical machines:

1. bounds LB (`optimizer.planning.makespan_bounds`) and an incumbent of makespan UB, the
   best of LPT, MULTIFIT and Karmarkar-Karp, each improved by local search, then of
   minimum-slack packings aimed at LB, LB + 1, ... (`optimizer.planning.incumbent`);
   LB = UB proves it optimal;
2. the arc-flow LP (`optimizer.planning.arc_flow`, certified by its duals) refutes
   C = LB, LB + 1, ... while it can, raising LB to the Gilmore-Gomory bound (which on
   random instances is almost always the optimum) on part of the work budget;
3. then probe capacities C in [LB, UB - 1], first C = LB, then halving what is left:
   "do the jobs fit in m bins of size C?" is solved by CP-SAT. "No" raises LB to C + 1; "yes" gives a schedule, improved by local search, that
   lowers UB; "unknown" (the probe's work budget ran out) moves the next probe above C.
   It ends when LB = UB (proven optimal) or the budget is spent.

Feasibility model (jobs of equal time aggregated: t_s distinct times, c_s jobs of each)::

    y[s, i] in {0, ..., min(c_s, floor(C / t_s))}     jobs of time t_s on machine i
    sum_i y[s, i] = c_s                               every job is placed
    sum_s t_s y[s, i] <= C                            every machine within C

Symmetry breaking: machines are identical, so the jobs longer than C/2 (one per machine at
most) are fixed to machines 0, 1, ... in decreasing order, and the remaining machines are
ordered by decreasing load.

When C and the number of distinct times are small enough (at most MAX_ARCS arcs), the
probe uses the arc-flow model instead (Valerio de Carvalho 1999), whose LP relaxation is as
strong as the Gilmore-Gomory pattern LP, so CP-SAT's LP subsolvers prove "no" quickly.
Nodes are the loads 0..C a machine can reach by adding jobs longest first; an arc
(d, d + t_s) for each time t_s that can follow, and a loss arc (d, C) from every node::

    f[a] in {0, ..., m}                               machines whose schedule uses arc a
    sum_{a out of 0} f[a] = m                         m machines start at load 0
    sum_{a into d} f[a] = sum_{a out of d} f[a]       for every node 0 < d < C
    sum_{a of time t_s} f[a] = c_s                    every job is placed

Each unit of flow from 0 to C is one machine's schedule. Ordering jobs longest first along
a path already breaks the symmetry between schedules of the same jobs. Each probe runs CP-SAT on deterministic work only (interleaved
subsolvers on one thread, `optimizer.planning.backends.configure_cp_sat`), so the answer
does not depend on the machine's load; the whole search runs in a child process
(`optimizer.planning.backends`), so a solver crash leaves the heuristic schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from optimizer.planning.backends import BackendResult, Progress, configure_cp_sat, in_child_process, stopped_by_wall_clock
from optimizer.planning.arc_flow import lp_phase
from optimizer.planning.incumbent import karmarkar_karp, local_search, lpt, makespan, multifit, targeted
from optimizer.planning.makespan_bounds import lower_bound

#: Share of the work budget given to the first probe, C = LB.
FIRST_PROBE_SHARE = 0.5
#: A probe gets at least this much deterministic work.
MIN_PROBE_S = 0.05
#: The arc-flow model is used up to this many arcs.
MAX_ARCS = 40_000
#: CPU-like work per unit of CP-SAT's deterministic time (measured at 50-100 machines: about
#: 2.7 CPU s on the arc-flow model, 1.7 on the assignment model), so that the budget, shared
#: with the LP probes, stays within the time limit.
ARC_FLOW_WORK_FACTOR = 2.5
ASSIGNMENT_WORK_FACTOR = 1.6
#: Share of the work budget for the arc-flow LP probes first (`optimizer.planning.arc_flow`).
LP_SHARE = 0.6


@dataclass(frozen=True)
class ExactResult:
    """A schedule and its certificate: optimal when `makespan == lower_bound`."""

    assignment: np.ndarray
    makespan: int
    lower_bound: int
    #: Makespan of the best heuristic schedule before any probe.
    heuristic: int
    #: How each probe ended: (C, "FEASIBLE" | "INFEASIBLE" | "UNKNOWN").
    probes: tuple[tuple[int, str], ...] = ()
    wall_clock_cut: bool = False
    message: str = ""

    @property
    def optimal(self) -> bool:
        return self.makespan <= self.lower_bound


def best_heuristic(times: np.ndarray, m: int, max_steps: int = 10_000) -> np.ndarray:
    """The best of LPT, MULTIFIT and Karmarkar-Karp after local search (first on ties)."""
    best, best_c = None, math.inf
    for rule in (lpt, multifit, karmarkar_karp):
        assignment = local_search(times, rule(times, m), m, max_steps=max_steps)
        c = makespan(times, assignment, m)
        if c < best_c:
            best, best_c = assignment, c
    return best


def solve_exact(
    times: np.ndarray,
    m: int,
    *,
    deterministic_limit_s: float,
    time_limit_s: float | None = None,
    seed: int = 0,
    num_workers: int = 8,
    progress: Progress | None = None,
    good_enough: int = 0,
) -> ExactResult:
    """The search of the module docstring. `deterministic_limit_s` is CP-SAT's work budget for
    all probes together; `time_limit_s` a wall-clock cap (None: none). The search also stops
    once the makespan is at most `good_enough` (when something else, such as a request's
    own chain, already bounds the caller's objective from below)."""

    started = time.perf_counter()
    times = np.asarray(times, dtype=np.int64)
    if len(times) and times.min() < 0:
        raise ValueError("processing times must be >= 0")
    assignment = best_heuristic(times, m)
    upper = int(makespan(times, assignment, m))
    lower = lower_bound(times, m, upper)
    if lower < upper:
        assignment = targeted(times, m, lower, assignment)
        upper = int(makespan(times, assignment, m))
    if lower >= upper or upper <= good_enough or deterministic_limit_s < MIN_PROBE_S:
        return ExactResult(assignment, upper, min(lower, upper), upper)
    deadline = np.inf if time_limit_s is None else started + time_limit_s
    proven = [lower]  # the best bound the child reported: proven even if it is killed later

    def relay(reached: float, bound: float, elapsed: float) -> None:
        proven[0] = max(proven[0], int(bound))
        if progress is not None:
            progress(reached, bound, elapsed)

    found = in_child_process(_search, (times, m, assignment, lower, deterministic_limit_s, seed, num_workers, good_enough), deadline, relay)
    if isinstance(found, BackendResult):  # the child failed or was killed: keep the heuristic
        return ExactResult(assignment, upper, min(proven[0], upper), upper, (), found.wall_clock_cut, found.message)
    return found


def _search(problem, deadline: float, report: Progress | None) -> ExactResult:
    times, m, assignment, lower, budget, seed, num_workers, good_enough = problem
    upper = heuristic = int(makespan(times, assignment, m))
    probes: list[tuple[int, str]] = []
    spent, cut = 0.0, False
    # The arc-flow LP first: GLOP refutes in a fraction of a second capacities that CP-SAT's
    # arc-flow model (with its own LP) leaves open for seconds.
    lower, spent = lp_phase(times, m, lower, upper, budget * LP_SHARE, probes, report)
    floor, first = lower, True  # the next probe is at or above floor
    while floor < upper and upper > good_enough and budget - spent >= MIN_PROBE_S:
        left = budget - spent
        if first:
            capacity, share, first = lower, left * FIRST_PROBE_SHARE, False
        else:
            capacity = (floor + upper - 1) // 2
            share = left / max(1, math.ceil(math.log2(upper - floor + 1)))
        status, found, used, probe_cut = fits(times, m, capacity, deterministic_limit_s=max(share, MIN_PROBE_S), deadline=deadline, seed=seed, num_workers=num_workers, hint=assignment)
        spent += used
        cut = cut or probe_cut
        probes.append((capacity, status))
        if status == "INFEASIBLE":
            lower = floor = capacity + 1
        elif status == "FEASIBLE":
            assignment = local_search(times, found, m)
            upper = int(makespan(times, assignment, m))
        else:
            floor = capacity + 1
            if probe_cut:
                break
        if report is not None:
            report(float(upper), float(lower), 0.0)
    return ExactResult(assignment, upper, min(lower, upper), heuristic, tuple(probes), cut and lower < upper)


def fits(
    times: np.ndarray,
    m: int,
    capacity: int,
    *,
    deterministic_limit_s: float,
    deadline: float = np.inf,
    seed: int = 0,
    num_workers: int = 8,
    hint: np.ndarray | None = None,
) -> tuple[str, np.ndarray | None, float, bool]:
    """Whether the jobs fit on m machines of `capacity` (the model of the module docstring):
    ("FEASIBLE", assignment, ...), ("INFEASIBLE", None, ...) or ("UNKNOWN", None, ...), with
    the deterministic work spent and whether the wall clock stopped the probe."""
    from ortools.sat.python import cp_model

    if len(times) and times.max() > capacity:
        return "INFEASIBLE", None, 0.0, False
    sizes, of_job, counts = np.unique(times, return_inverse=True, return_counts=True)
    arcs = _arcs(sizes, counts, capacity)
    if arcs is not None:
        return _arc_flow_fits(times, m, capacity, sizes, of_job, counts, arcs, deterministic_limit_s, deadline, seed, num_workers)
    model = cp_model.CpModel()
    # y[s, i] = how many jobs of time sizes[s] run on machine i.
    y = [
        [model.new_int_var(0, int(min(c, capacity // s if s > 0 else c)), f"y[{s_i},{i}]") for i in range(m)]
        for s_i, (s, c) in enumerate(zip(sizes.tolist(), counts.tolist()))
    ]
    # Every job is placed.
    for s_i, c in enumerate(counts.tolist()):
        model.add(sum(y[s_i]) == c)
    # Every machine is loaded within the capacity.
    loads = [sum(int(s) * y[s_i][i] for s_i, s in enumerate(sizes.tolist())) for i in range(m)]
    for i in range(m):
        model.add(loads[i] <= capacity)
    # Symmetry breaking: the jobs longer than C/2 (at most one per machine) on machines
    # 0, 1, ... from the longest; the other machines are interchangeable, ordered by load.
    big = np.sort(times[2 * times > capacity])[::-1]
    if len(big) > m:
        return "INFEASIBLE", None, 0.0, False
    for i, p in enumerate(big.tolist()):
        s_i = int(np.searchsorted(sizes, p))
        model.add(y[s_i][i] >= 1)
    for i in range(len(big), m - 1):
        model.add(loads[i] >= loads[i + 1])
    if hint is not None:
        for s_i in range(len(sizes)):
            on = np.bincount(hint[of_job == s_i], minlength=m)
            for i in range(m):
                model.add_hint(y[s_i][i], int(on[i]))
    solver = cp_model.CpSolver()
    limit = deterministic_limit_s / ASSIGNMENT_WORK_FACTOR
    configure_cp_sat(solver, deterministic_limit_s=limit, deadline=deadline, num_workers=num_workers, seed=seed, relative_gap=0.0)
    status = solver.solve(model)
    used = float(solver.response_proto.deterministic_time) * ASSIGNMENT_WORK_FACTOR
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        assignment = np.empty(len(times), dtype=np.int64)
        for s_i in range(len(sizes)):
            machines = np.repeat(np.arange(m), [solver.value(y[s_i][i]) for i in range(m)])
            assignment[of_job == s_i] = machines
        return "FEASIBLE", assignment, used, False
    if status == cp_model.INFEASIBLE:
        return "INFEASIBLE", None, used, False
    return "UNKNOWN", None, used, stopped_by_wall_clock(solver, "UNKNOWN", limit)


def _arcs(sizes: np.ndarray, counts: np.ndarray, capacity: int) -> list[tuple[int, int, int]] | None:
    """Arcs (tail, head, time index) of the arc-flow graph, longest times first along a path;
    None when there would be more than MAX_ARCS."""
    reached = {0}
    arcs: set[tuple[int, int, int]] = set()
    for s_i in range(len(sizes) - 1, -1, -1):  # longest first
        size, count = int(sizes[s_i]), int(counts[s_i])
        if size == 0:
            continue
        new = set()
        for start in sorted(reached):
            load = start
            for _ in range(count):
                if load + size > capacity:
                    break
                arcs.add((load, load + size, s_i))
                new.add(load + size)
                load += size
                if len(arcs) > MAX_ARCS:
                    return None
        reached |= new
    return sorted(arcs)


def _arc_flow_fits(times, m, capacity, sizes, of_job, counts, arcs, deterministic_limit_s, deadline, seed, num_workers):
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    nodes = sorted({0, capacity} | {a for a, _, _ in arcs} | {b for _, b, _ in arcs})
    # f[a] = how many machines' schedules use job arc a; loss[d] = how many stop adding jobs at d.
    f = [model.new_int_var(0, min(m, int(counts[s_i])), f"f[{a},{b},{s_i}]") for a, b, s_i in arcs]
    loss = {d: model.new_int_var(0, m, f"loss[{d}]") for d in nodes if d < capacity}
    into: dict[int, list] = {d: [] for d in nodes}
    out: dict[int, list] = {d: [] for d in nodes}
    for var, (a, b, _) in zip(f, arcs):
        out[a].append(var)
        into[b].append(var)
    for d, var in loss.items():
        out[d].append(var)
    # m machines start at load 0; flow is conserved at every other node below C.
    model.add(sum(out[0]) == m)
    for d in nodes:
        if 0 < d < capacity:
            model.add(sum(into[d]) == sum(out[d]))
    # Every job is placed (zero-time jobs go anywhere).
    of_time: dict[int, list] = {}
    for var, (_, _, t) in zip(f, arcs):
        of_time.setdefault(t, []).append(var)
    for s_i in range(len(sizes)):
        if sizes[s_i] > 0:
            model.add(sum(of_time.get(s_i, [])) == int(counts[s_i]))
    solver = cp_model.CpSolver()
    # CP-SAT's deterministic time undercounts this model's work (about 2.7 CPU s per unit at
    # 25,000 arcs): it gets the budget in CPU-like units divided by ARC_FLOW_WORK_FACTOR.
    limit = deterministic_limit_s / ARC_FLOW_WORK_FACTOR
    configure_cp_sat(solver, deterministic_limit_s=limit, deadline=deadline, num_workers=num_workers, seed=seed, relative_gap=0.0)
    status = solver.solve(model)
    used = float(solver.response_proto.deterministic_time) * ARC_FLOW_WORK_FACTOR
    if status == cp_model.INFEASIBLE:
        return "INFEASIBLE", None, used, False
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "UNKNOWN", None, used, stopped_by_wall_clock(solver, "UNKNOWN", limit)
    # Decompose the flow into m paths from 0: each path is one machine's times.
    flow = {arc: solver.value(var) for arc, var in zip(arcs, f)}
    leaving: dict[int, list] = {}
    for arc in arcs:
        leaving.setdefault(arc[0], []).append(arc)
    queues = {s_i: list(np.flatnonzero(of_job == s_i)) for s_i in range(len(sizes))}
    assignment = np.zeros(len(times), dtype=np.int64)
    for machine in range(m):
        d = 0
        while True:
            arc = next((a for a in leaving.get(d, ()) if flow[a] > 0), None)
            if arc is None:
                break
            flow[arc] -= 1
            assignment[queues[arc[2]].pop()] = machine
            d = arc[1]
    return "FEASIBLE", assignment, used, False
