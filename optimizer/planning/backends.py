"""Solver backends: one `LinearModel` (see `optimizer.planning.formulation`), several engines.

- ``cp-sat``: OR-Tools CP-SAT. Needs integer coefficients, so rows that involve the
  makespan C are scaled to units of UB / 10^6 and rounded (the plan is re-scored exactly).
- ``scip``: OR-Tools' linear solver wrapper with SCIP. (Its HiGHS engine crashed the
  process on the class MIP with OR-Tools 9.15, so it is not offered.)

Both ``scip`` and ``cbc`` run in a child process that is killed at the deadline plus a
grace period: each has been seen running far past its own limit.
- ``cbc``: PuLP with its bundled CBC.

Each returns a `BackendResult`: a status (``OPTIMAL``, ``FEASIBLE``, ``NO_SOLUTION``,
``INFEASIBLE``), the variable values (or None), the objective and the proven bound of C.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optimizer.planning.formulation import LinearModel

#: Grace beyond the time limit before a child-process solver is killed.
KILL_GRACE_S = 2.0
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
) -> BackendResult:
    """Solve `model`; `deterministic_limit_s` (CP-SAT's work units, close to seconds) stops
    CP-SAT at the same point on every run, `time_limit_s` is the wall-clock cap, building
    the solver's own model included."""
    started = time.perf_counter()
    deadline = started + time_limit_s
    if backend == "cp-sat":
        budget = time_limit_s if deterministic_limit_s is None else deterministic_limit_s
        result = _cp_sat(model, deadline, budget, num_workers, seed, progress)
    elif backend == "scip":
        # SCIP's presolve has been seen running 20 s past its limit: a killable child.
        result = _in_child_process(_scip, model, deadline)
    elif backend == "cbc":
        result = _in_child_process(_pulp_cbc, model, deadline)
    else:  # the facade checks names first; this is a programming error
        raise ValueError(f"unknown backend {backend!r}")
    return BackendResult(result.status, result.values, result.objective, result.bound, time.perf_counter() - started)


def lp_relaxation(model: LinearModel) -> float:
    """The optimum of the model with integrality dropped (GLOP): a lower bound on its C."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    infinity = solver.infinity()
    variables = [solver.NumVar(lo, hi, name) for lo, hi, name in zip(model.lower, model.upper, model.names)]
    for index, coef, lo, hi in model.rows:
        row = solver.RowConstraint(lo if np.isfinite(lo) else -infinity, hi if np.isfinite(hi) else infinity)
        for i, a in zip(index.tolist(), coef.tolist()):
            row.SetCoefficient(variables[i], a)
    solver.Minimize(variables[model.objective])
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return model.lower[model.objective]
    return variables[model.objective].solution_value()


def _remaining(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.01)


def _cp_sat(
    model: LinearModel, deadline: float, deterministic_limit_s: float, num_workers: int, seed: int, progress: Progress | None
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
    solver.parameters.num_workers = num_workers
    solver.parameters.random_seed = seed
    # Interleaved workers on one thread, stopped by deterministic time: the same inputs and
    # seed give the same plan on any machine, unless the wall-clock cap (a safety net)
    # stops the search first on a heavily loaded machine.
    solver.parameters.interleave_search = True
    solver.parameters.max_deterministic_time = float(deterministic_limit_s)
    solver.parameters.max_time_in_seconds = _remaining(deadline)
    # Stop within 0.01% of the bound, as MIP solvers do by default: proving the last
    # fraction of a percent on a class model is not worth the time limit.
    solver.parameters.relative_gap_limit = RELATIVE_GAP

    # C's lower limit is a proven lower bound (for the class model, its LP relaxation): a
    # plan within 0.01% of it is good enough.
    good_enough = model.lower[c] * (1 + 1e-4)

    class Callback(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            if progress is not None:
                progress(self.objective_value * unit, self.best_objective_bound * unit, self.wall_time)
            if self.objective_value * unit <= good_enough:
                self.stop_search()

    status = solver.solve(cp, Callback())
    names = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE"}
    name = names.get(status, "NO_SOLUTION")
    if name in ("OPTIMAL", "FEASIBLE"):
        values = np.array([solver.value(v) for v in variables], dtype=float)
        values[c] *= unit
        return BackendResult(name, values, solver.objective_value * unit, solver.best_objective_bound * unit, 0.0)
    return BackendResult(name, None, np.inf, solver.best_objective_bound * unit if name != "INFEASIBLE" else np.inf, 0.0)


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


def _scip(model: LinearModel, deadline: float) -> BackendResult:
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
    solver.SetTimeLimit(int(_remaining(deadline) * 1000))
    status = solver.Solve()
    if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        values = np.array([v.solution_value() for v in variables])
        name = "OPTIMAL" if status == pywraplp.Solver.OPTIMAL else "FEASIBLE"
        return BackendResult(name, values, values[model.objective], solver.Objective().BestBound(), 0.0)
    if status == pywraplp.Solver.INFEASIBLE:
        return BackendResult("INFEASIBLE", None, np.inf, np.inf, 0.0)
    return BackendResult("NO_SOLUTION", None, np.inf, -np.inf, 0.0)


def _pulp_cbc(model: LinearModel, deadline: float) -> BackendResult:
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
    status = problem.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=_remaining(deadline), warmStart=True, threads=1))
    values = np.array([v.value() if v.value() is not None else np.nan for v in variables], dtype=float)
    if pulp.LpStatus[status] == "Infeasible":
        return BackendResult("INFEASIBLE", None, np.inf, np.inf, 0.0)
    if np.isnan(values).any():
        return BackendResult("NO_SOLUTION", None, np.inf, -np.inf, 0.0)
    name = "OPTIMAL" if pulp.LpStatus[status] == "Optimal" and problem.sol_status == pulp.LpSolutionOptimal else "FEASIBLE"
    bound = values[model.objective] if name == "OPTIMAL" else -np.inf
    return BackendResult(name, values, values[model.objective], bound, 0.0)


def _child(connection, function, model, deadline) -> None:
    os.setpgrp()  # its own process group, so the solver it starts dies with it
    try:
        connection.send(function(model, deadline))
    except Exception as exc:  # reported to the parent, which decides
        connection.send(exc)


def _in_child_process(function, model: LinearModel, deadline: float) -> BackendResult:
    """Run `function(model, deadline)` in a child process killed at the deadline plus grace."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, function, model, deadline), daemon=True)
    child.start()
    send.close()
    result = None
    if receive.poll(max(deadline - time.perf_counter(), 0.0) + KILL_GRACE_S):
        try:
            result = receive.recv()
        except EOFError:
            result = None
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.join()
    if isinstance(result, Exception):
        raise result
    if result is None:
        return BackendResult("NO_SOLUTION", None, np.inf, -np.inf, 0.0)
    return result
