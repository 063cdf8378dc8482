"""Pure P||Cmax instances (identical machines, jobs with processing times) for checking the
planner against published optima.

The literature's instance format: line 1 the number of machines m, line 2 the number of
jobs n, then n processing times (whitespace-separated, any number per line). Jobs become
requests with work = latency = processing time on one replica kind, so the planner's
model reduces to  min C  s.t.  sum_j p_j x_jr <= C,  sum_r x_jr = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizer.common.errors import InputError
from optimizer.fleet.estimates import Estimates
from optimizer.planning.bounds import lower_bounds
from optimizer.planning.solve import check_options, optimize


@dataclass(frozen=True)
class PcmaxResult:
    makespan: int
    lower_bound: int
    status: str
    num_machines: int
    num_jobs: int
    loads: np.ndarray


def read_pcmax(path: str | Path) -> tuple[int, np.ndarray]:
    """(m, processing times) from a file in the literature's format."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read ({exc}).", path=path) from None
    tokens = [(number, token) for number, line in enumerate(lines, start=1) for token in line.split()]
    if len(tokens) < 2:
        raise InputError("needs the number of machines, the number of jobs and the processing times.", path=path)

    def whole(index: int, what: str, minimum: int) -> int:
        number, token = tokens[index]
        try:
            value = int(token)
        except ValueError:
            raise InputError(f"{what} {token!r} is not a whole number.", path=path, line=number) from None
        if value < minimum:
            raise InputError(f"{what} must be at least {minimum}, got {value}.", path=path, line=number)
        return value

    m = whole(0, "the number of machines", 1)
    n = whole(1, "the number of jobs", 1)
    if len(tokens) - 2 != n:
        raise InputError(f"declares {n} jobs but lists {len(tokens) - 2} processing times.", path=path)
    times = np.array([whole(2 + j, "processing time", 0) for j in range(n)], dtype=float)
    return m, times


def pcmax_estimates(m: int, times: np.ndarray) -> Estimates:
    n = len(times)
    column = times[:, None]
    return Estimates(
        kinds=("machine",),
        replicas_of_kind=(np.arange(m),),
        kind_of_replica=np.zeros(m, dtype=np.int64),
        arrival_s=np.zeros(n),
        prefill_s=np.zeros((n, 1)),
        work_s=column,
        latency_s=column,
        min_work_s=column,
        min_latency_s=column,
        kv_tokens=np.zeros((n, 1), dtype=np.int64),
        eligible=np.ones((n, 1), dtype=bool),
        batch_size=np.ones(1),
        drain_s=np.zeros(1),
    )


def solve_pcmax(m: int, times: np.ndarray, *, solver: str = "cp-sat", time_limit_s: float = 10.0, seed: int = 0) -> PcmaxResult:
    check_options(solver, "auto", time_limit_s)
    estimates = pcmax_estimates(m, times)
    bound = int(np.ceil(lower_bounds(estimates).best_s - 1e-9))
    found = optimize(estimates, float(bound), solver=solver, time_limit_s=time_limit_s, formulation="per-request", seed=seed)
    loads = np.bincount(found.assignment, weights=times, minlength=m)
    makespan = int(round(loads.max()))
    lower = max(bound, int(np.ceil(found.lower_bound - 1e-6)))
    status = "OPTIMAL" if makespan <= lower else ("HEURISTIC" if found.status == "HEURISTIC" else "FEASIBLE")
    return PcmaxResult(makespan, min(lower, makespan), status, m, len(times), loads)
