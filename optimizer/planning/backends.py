"""Solver backends: one `LinearModel` (see `optimizer.planning.formulation`), several engines.

- ``cp-sat``: OR-Tools CP-SAT. Needs integer coefficients, so rows that involve the
  makespan C are scaled to units of UB / 10^6 and rounded (the plan is re-scored exactly).
- ``scip``: OR-Tools' linear solver wrapper with SCIP. (Its HiGHS engine crashed the
  process on the class MIP with OR-Tools 9.15, so it is not offered.)

- ``cbc``: PuLP with its bundled CBC.

Every backend runs in a forked child process: SCIP and CBC have been seen running far past
their own limits, and CP-SAT 9.15 has aborted the whole process (a failed check in its
postsolve). The child is killed at the deadline plus a grace period; a child that dies or
raises leaves a `BackendResult` with status ``FAILED`` and a one-line reason, and the caller
keeps its incumbent plan.

CP-SAT stops on deterministic work (``max_deterministic_time``) and on the requested
relative gap, both set as parameters (never from the solution callback, which only reports
progress): the same inputs and seed give the same answer on an idle or a loaded machine.
The wall-clock limit is a safety net; when it is what stopped the search, the result says
so (``wall_clock_cut``), and with ``wall_clock_cap=False`` there is none.

Each returns a `BackendResult`: a status (``OPTIMAL``, ``FEASIBLE``, ``NO_SOLUTION``,
``INFEASIBLE``), the variable values (or None), the objective and the proven bound of C.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from optimizer.planning.formulation import LinearModel

#: Grace beyond the time limit before a child-process solver is killed: CP-SAT stops on its
#: own within milliseconds; SCIP and CBC have overrun by tens of seconds.
KILL_GRACE_S = 0.5
_CP_SAT_RESOLUTION = 1e6
#: CP-SAT stops within this relative gap of its own bound (MIP solvers stop near 1e-4).
RELATIVE_GAP = 5e-4


@dataclass(frozen=True)
class BackendResult:
    status: str
    values: np.ndarray | None
    objective: float
    bound: float
    time_s: float
    #: True when the wall clock, not the deterministic budget or the gap, stopped the solver.
    wall_clock_cut: bool = False
    #: Why the solver failed (status FAILED), one line; empty otherwise.
    message: str = ""


#: Called with (incumbent C, bound, elapsed seconds) when a solver reports progress.
Progress = Callable[[float, float, float], None]


def available_backends() -> dict[str, str]:
    """Backends that can run here, with a description."""
    found = {"cp-sat": "OR-Tools CP-SAT (constraint programming with SAT and LP)"}
    from ortools.linear_solver import pywraplp

    if pywraplp.Solver.CreateSolver("SCIP") is not None:
        found["scip"] = "OR-Tools linear solver wrapper with SCIP (in a child process, killed at the time limit)"
    try:
        import pulp

        if "PULP_CBC_CMD" in pulp.listSolvers(onlyAvailable=True):
            found["cbc"] = "PuLP with CBC (in a child process, killed at the time limit)"
    except ImportError:
        pass
    return found


def solve_model(
    model: LinearModel,
    backend: str,
    *,
    time_limit_s: float,
    num_workers: int,
    seed: int,
    deterministic_limit_s: float | None = None,
    progress: Progress | None = None,
    relative_gap: float = RELATIVE_GAP,
    wall_clock_cap: bool = True,
) -> BackendResult:
    """Solve `model`, starting from its hint.

    `deterministic_limit_s` (CP-SAT's work units, close to seconds) stops CP-SAT at the same
    point on every run; `time_limit_s` is the wall-clock cap, building the solver's own
    model included (none when `wall_clock_cap` is False). The solver stops once its plan is
    within `relative_gap` of its bound. When the hint already is within that gap of C's
    lower limit (a proven bound), no solver runs: the hint is returned as it is.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s if wall_clock_cap else np.inf
    c = model.objective
    if model.hint[c] <= model.lower[c] * (1 + relative_gap):
        # Nothing to gain; and CP-SAT 9.15 aborts when told to stop on its first (hinted) solution.
        status = "OPTIMAL" if model.hint[c] <= model.lower[c] else "FEASIBLE"
        return BackendResult(status, np.asarray(model.hint, dtype=float), model.hint[c], model.lower[c], 0.0)
    if backend == "cp-sat":
        budget = time_limit_s if deterministic_limit_s is None else deterministic_limit_s
        work = functools.partial(_cp_sat, deterministic_limit_s=budget, num_workers=num_workers, seed=seed, relative_gap=relative_gap)
    elif backend == "scip":
        work = functools.partial(_scip, relative_gap=relative_gap)
    elif backend == "cbc":
        work = functools.partial(_pulp_cbc, relative_gap=relative_gap)
    else:  # the facade checks names first; this is a programming error
        raise ValueError(f"unknown backend {backend!r}")
    result = in_child_process(work, model, deadline, progress)
    return replace(result, time_s=time.perf_counter() - started)


def lp_solution(model: LinearModel, lower=None, upper=None) -> tuple[float, np.ndarray | None]:
    """The model's optimum and solution with integrality dropped (GLOP), optionally with other
    variable bounds, or (inf, None) when that LP is infeasible."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    infinity = solver.infinity()
    variables = [solver.NumVar(lo, hi, name) for lo, hi, name in zip(lower or model.lower, upper or model.upper, model.names)]
    for index, coef, lo, hi in model.rows:
        row = solver.RowConstraint(lo if np.isfinite(lo) else -infinity, hi if np.isfinite(hi) else infinity)
        for i, a in zip(index.tolist(), coef.tolist()):
            row.SetCoefficient(variables[i], a)
    solver.Minimize(variables[model.objective])
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return math.inf, None
    return variables[model.objective].solution_value(), np.array([v.solution_value() for v in variables])


def lp_relaxation(model: LinearModel) -> float:
    """The optimum of the model with integrality dropped (GLOP): a lower bound on its C (the
    variable's own lower bound when the LP has no optimum)."""
    value, values = lp_solution(model)
    return model.lower[model.objective] if values is None else value


def _remaining(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.01)


def _cp_sat(
    model: LinearModel,
    deadline: float,
    report: Progress | None,
    *,
    deterministic_limit_s: float,
    num_workers: int,
    seed: int,
    relative_gap: float,
) -> BackendResult:
    from ortools.sat.python import cp_model

    c = model.objective
    unit = max(model.upper[c], 1e-9) / _CP_SAT_RESOLUTION
    if _integral_times(model):
        unit = 1.0  # integer data (P||Cmax instances) are solved exactly
    cp = cp_model.CpModel()
    variables = []
    for i in range(model.num_vars):
        if i == c:
            variables.append(cp.new_int_var(int(np.floor(model.lower[i] / unit)), int(np.ceil(model.upper[i] / unit)), model.names[i]))
        else:
            variables.append(cp.new_int_var(int(np.ceil(model.lower[i])), int(np.floor(model.upper[i])), model.names[i]))
    for index, coef, lo, hi in model.rows:
        timed = c in index  # rows with C are in seconds: scale them to units
        scale = np.where(index == c, 1.0, 1.0 / unit) if timed else np.ones(len(index))
        ints = np.round(coef * scale).astype(np.int64)
        expr = sum(int(a) * variables[int(i)] for a, i in zip(ints, index))
        lo_int = -(2**62) if not np.isfinite(lo) else int(np.ceil(lo / unit if timed else lo))
        hi_int = 2**62 if not np.isfinite(hi) else int(np.floor(hi / unit if timed else hi))
        cp.add_linear_constraint(expr, lo_int, hi_int)
    cp.minimize(variables[c])
    hint = [int(round(value)) for value in model.hint]
    # The incumbent's C after rounding the coefficients: it may be a unit or so above UB,
    # and the hint must stay feasible for CP-SAT to start from it.
    needed = hint_c = int(np.ceil(model.hint[c] / unit))
    for index, coef, _, hi in model.rows:
        at = np.flatnonzero(index == c)
        if len(at) and np.isfinite(hi):
            others = np.flatnonzero(index != c)
            ints = np.round(coef[others] / unit).astype(np.int64)
            load = int(sum(int(a) * hint[int(i)] for a, i in zip(ints, index[others])))
            needed = max(needed, int(np.ceil((load - np.floor(hi / unit)) / -coef[at[0]])))
    if needed > hint_c:
        variables[c] = _widen(cp, variables[c], needed)
    for i, value in enumerate(hint):
        cp.add_hint(variables[i], max(value, needed) if i == c else value)
    solver = cp_model.CpSolver()
    configure_cp_sat(solver, deterministic_limit_s=deterministic_limit_s, deadline=deadline, num_workers=num_workers, seed=seed, relative_gap=relative_gap)

    class Callback(cp_model.CpSolverSolutionCallback):
        """Reports progress only: stopping from here made CP-SAT 9.15 abort in postsolve."""

        def on_solution_callback(self) -> None:
            report(self.objective_value * unit, self.best_objective_bound * unit, self.wall_time)

    status = solver.solve(cp, Callback() if report is not None else None)
    names = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE"}
    name = names.get(status, "NO_SOLUTION")
    cut = stopped_by_wall_clock(solver, name, deterministic_limit_s)
    if name in ("OPTIMAL", "FEASIBLE"):
        values = np.array([solver.value(v) for v in variables], dtype=float)
        values[c] *= unit
        return BackendResult(name, values, solver.objective_value * unit, solver.best_objective_bound * unit, 0.0, cut)
    return BackendResult(name, None, np.inf, solver.best_objective_bound * unit if name != "INFEASIBLE" else np.inf, 0.0, cut)


def configure_cp_sat(solver, *, deterministic_limit_s: float, deadline: float, num_workers: int, seed: int, relative_gap: float) -> None:
    """CP-SAT parameters for a reproducible search: interleaved workers on one thread, stopped
    by deterministic work and by the gap, with the wall clock only as a safety net."""
    # interleave_search runs `num_workers` subsolvers in a fixed schedule, the same whatever
    # the machine. Its default batch (one task per worker at a time) spread over threads
    # used ~1.9 of the 2 cores here and overshot the deterministic limit 3-8x (1 unit
    # asked, 8 spent), so the wall-clock cap decided; one task at a time stays on one core
    # and stops at the limit.
    solver.parameters.interleave_search = True
    solver.parameters.num_workers = max(int(num_workers), 1)
    solver.parameters.interleave_batch_size = 1
    solver.parameters.random_seed = int(seed) % 2**31
    solver.parameters.max_deterministic_time = float(deterministic_limit_s)
    if np.isfinite(deadline):
        solver.parameters.max_time_in_seconds = _remaining(deadline)
    solver.parameters.relative_gap_limit = float(relative_gap)


def stopped_by_wall_clock(solver, status: str, deterministic_limit_s: float) -> bool:
    """True when CP-SAT stopped on its time limit before its deterministic budget ran out."""
    if status in ("OPTIMAL", "INFEASIBLE"):
        return False
    return solver.response_proto.deterministic_time < 0.99 * deterministic_limit_s


def _integral_times(model: LinearModel) -> bool:
    """True when every coefficient and bound of the rows with C is a whole number."""
    c = model.objective
    if model.upper[c] > 2**40:
        return False
    for index, coef, lo, hi in model.rows:
        if c in index:
            values = np.r_[coef, [v for v in (lo, hi) if np.isfinite(v)]]
            if np.any(np.abs(values - np.round(values)) > 1e-9):
                return False
    return True


def _widen(cp, variable, upper: int):
    """Raise the upper bound of a CP-SAT integer variable."""
    domain = variable.proto.domain
    domain[-1] = max(domain[-1], upper)
    return variable


def _scip(model: LinearModel, deadline: float, report: Progress | None, *, relative_gap: float) -> BackendResult:
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("SCIP")
    infinity = solver.infinity()
    variables = [
        (solver.IntVar if integer else solver.NumVar)(lo, hi, name)
        for lo, hi, integer, name in zip(model.lower, model.upper, model.is_integer, model.names)
    ]
    for index, coef, lo, hi in model.rows:
        row = solver.RowConstraint(lo if np.isfinite(lo) else -infinity, hi if np.isfinite(hi) else infinity)
        for i, a in zip(index.tolist(), coef.tolist()):
            row.SetCoefficient(variables[i], a)
    solver.Minimize(variables[model.objective])
    solver.SetHint(variables, [float(v) for v in model.hint])
    if np.isfinite(deadline):
        solver.SetTimeLimit(int(_remaining(deadline) * 1000))
    parameters = pywraplp.MPSolverParameters()
    parameters.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, float(relative_gap))
    status = solver.Solve(parameters)
    if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        values = np.array([v.solution_value() for v in variables])
        name = "OPTIMAL" if status == pywraplp.Solver.OPTIMAL else "FEASIBLE"
        return BackendResult(name, values, values[model.objective], solver.Objective().BestBound(), 0.0)
    if status == pywraplp.Solver.INFEASIBLE:
        return BackendResult("INFEASIBLE", None, np.inf, np.inf, 0.0)
    return BackendResult("NO_SOLUTION", None, np.inf, -np.inf, 0.0)


def _pulp_cbc(model: LinearModel, deadline: float, report: Progress | None, *, relative_gap: float) -> BackendResult:
    import pulp

    problem = pulp.LpProblem("makespan", pulp.LpMinimize)
    variables = [
        pulp.LpVariable(f"v{i}", lowBound=lo, upBound=hi, cat=pulp.LpInteger if integer else pulp.LpContinuous)
        for i, (lo, hi, integer) in enumerate(zip(model.lower, model.upper, model.is_integer))
    ]
    problem += variables[model.objective]
    for number, (index, coef, lo, hi) in enumerate(model.rows):
        expr = pulp.lpSum(a * variables[i] for i, a in zip(index.tolist(), coef.tolist()))
        if lo == hi:
            problem += (expr == lo, f"r{number}")
        else:
            if np.isfinite(hi):
                problem += (expr <= hi, f"r{number}u")
            if np.isfinite(lo):
                problem += (expr >= lo, f"r{number}l")
    for variable, value in zip(variables, model.hint):
        variable.setInitialValue(value)
    limit = _remaining(deadline) if np.isfinite(deadline) else None
    status = problem.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=limit, gapRel=relative_gap, warmStart=True, threads=1))
    values = np.array([v.value() if v.value() is not None else np.nan for v in variables], dtype=float)
    if pulp.LpStatus[status] == "Infeasible":
        return BackendResult("INFEASIBLE", None, np.inf, np.inf, 0.0)
    if np.isnan(values).any():
        return BackendResult("NO_SOLUTION", None, np.inf, -np.inf, 0.0)
    name = "OPTIMAL" if pulp.LpStatus[status] == "Optimal" and problem.sol_status == pulp.LpSolutionOptimal else "FEASIBLE"
    bound = values[model.objective] if name == "OPTIMAL" else -np.inf
    return BackendResult(name, values, values[model.objective], bound, 0.0)


def _child(connection, function, model, deadline, with_progress: bool) -> None:
    os.setpgrp()  # its own process group: the solver it starts dies with it, Ctrl-C spares it
    report = (lambda *values: connection.send(("progress", values))) if with_progress else None
    try:
        connection.send(("result", function(model, deadline, report)))
    except BaseException as exc:  # reported to the parent, which keeps its incumbent
        connection.send(("failed", f"{type(exc).__name__}: {exc}".splitlines()[0]))


def in_child_process(function, model, deadline: float, progress: Progress | None = None):
    """Run `function(model, deadline, report)` in a forked child killed at the deadline plus
    grace, and return what it returns; progress reports are relayed to `progress`. A child
    that dies, raises or overruns gives a `BackendResult` with status FAILED (with a reason)
    or NO_SOLUTION, never an exception here."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, function, model, deadline, progress is not None), daemon=True)
    child.start()
    send.close()
    result = None
    failure = ""
    try:
        while result is None and not failure:
            wait = None if not np.isfinite(deadline) else max(deadline - time.perf_counter(), 0.0) + KILL_GRACE_S
            if not receive.poll(wait):
                break  # overran: killed below
            try:
                kind, payload = receive.recv()
            except EOFError:
                child.join()
                failure = f"the solver process ended without an answer (exit code {child.exitcode})"
                break
            if kind == "progress":
                progress(*payload)
            elif kind == "result":
                result = payload
            else:
                failure = payload
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.join()
        receive.close()
    if failure:
        return BackendResult("FAILED", None, np.inf, -np.inf, 0.0, False, failure)
    if result is None:
        return BackendResult("NO_SOLUTION", None, np.inf, -np.inf, 0.0, True)
    return result


_in_child_process = in_child_process
