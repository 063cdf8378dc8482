"""Pure P||Cmax instances (identical machines, jobs with processing times) from the
scheduling literature, solved by the exact core of `optimizer.planning.exact`.

Instance files (whitespace-separated whole numbers, any number per line):

- the common format (Franca et al. 1994, Frangioni et al. 2004, Dell'Amico & Martello
  1995, Mrad & Souayah 2018): the number of machines m, the number of jobs n, then n
  processing times;
- the same with a header: lines starting with ``#`` or ``%`` are comments, and m and n
  may be given as ``key value`` or ``key = value`` / ``key: value`` lines whose key is one
  of m, machines, num_machines, n, jobs, num_jobs (any case), before the times.

Anything else is refused with one line naming the file, line and token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizer.common.errors import InputError
from optimizer.fleet.estimates import Estimates
from optimizer.planning.bounds import lower_bounds
from optimizer.planning.exact import solve_exact
from optimizer.planning.heuristics import lpt
from optimizer.planning.makespan_bounds import l0_bound, lower_bound
from optimizer.planning.solve import check_options, optimize

#: Share of `time_limit_s` given to CP-SAT as deterministic work: the rest covers bounds,
#: heuristics and the solver's start-up, so the wall-clock cap rarely decides.
PCMAX_DETERMINISTIC_SHARE = 0.7
#: Largest machine and job counts and processing time accepted.
MAX_MACHINES = 100_000
MAX_JOBS = 10_000_000
MAX_TIME = 10**12

_KEYS = {"m": "m", "machines": "m", "num_machines": "m", "n": "n", "jobs": "n", "num_jobs": "n"}
_KEY_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*[:=]?\s*(\S+)\s*$")


@dataclass(frozen=True)
class PcmaxResult:
    makespan: int
    lower_bound: int
    status: str
    num_machines: int
    num_jobs: int
    loads: np.ndarray
    #: The classical bound L0 and the LPT makespan, for comparison.
    l0_bound: int = 0
    lpt_makespan: int = 0
    #: Best heuristic (LPT, MULTIFIT, Karmarkar-Karp with local search) before any probe.
    heuristic_makespan: int = 0
    probes: tuple[tuple[int, str], ...] = ()
    wall_clock_cut: bool = False
    message: str = ""


def read_pcmax(path: str | Path) -> tuple[int, np.ndarray]:
    """(m, processing times) from a file in one of the formats of the module docstring."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read ({exc}).", path=path) from None
    declared: dict[str, tuple[int, int]] = {}
    tokens: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text[0] in "#%":
            continue
        keyed = _KEY_LINE.match(text)
        if keyed and not tokens and keyed.group(1).lower() in _KEYS:
            declared[_KEYS[keyed.group(1).lower()]] = (number, _whole(keyed.group(2), keyed.group(1), path, number, 1))
            continue
        tokens.extend((number, token) for token in text.split())
    if "m" in declared and "n" in declared:
        m, n, start = declared["m"][1], declared["n"][1], 0
    elif declared:
        missing = "number of jobs (n)" if "m" in declared else "number of machines (m)"
        raise InputError(f"the header gives no {missing}.", path=path)
    else:
        if len(tokens) < 2:
            raise InputError("needs the number of machines, the number of jobs and the processing times.", path=path)
        m = _whole(tokens[0][1], "the number of machines", path, tokens[0][0], 1)
        n = _whole(tokens[1][1], "the number of jobs", path, tokens[1][0], 1)
        start = 2
    if m > MAX_MACHINES or n > MAX_JOBS:
        raise InputError(f"at most {MAX_MACHINES:,} machines and {MAX_JOBS:,} jobs are accepted, got m = {m:,}, n = {n:,}.", path=path)
    if len(tokens) - start != n:
        raise InputError(f"declares {n} jobs but lists {len(tokens) - start} processing times.", path=path)
    times = np.array([_whole(token, "processing time", path, number, 0) for number, token in tokens[start:]], dtype=np.int64)
    return m, times


def _whole(token: str, what: str, path: Path, line: int, minimum: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise InputError(f"{what} {token!r} is not a whole number.", path=path, line=line) from None
    if value < minimum:
        raise InputError(f"{what} must be at least {minimum}, got {value}.", path=path, line=line)
    if value > MAX_TIME:
        raise InputError(f"{what} {value} is above the limit of {MAX_TIME:,}.", path=path, line=line)
    return value


def pcmax_estimates(m: int, times: np.ndarray) -> Estimates:
    n = len(times)
    column = np.asarray(times, dtype=float)[:, None]
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


def solve_pcmax(
    m: int, times: np.ndarray, *, solver: str = "cp-sat", time_limit_s: float = 10.0, seed: int = 0, deterministic: bool = False
) -> PcmaxResult:
    """Solve a P||Cmax instance: with cp-sat by the exact core (OPTIMAL when the makespan
    equals a proven bound), with another backend by the per-request MIP, or by a heuristic."""
    check_options(solver, "auto", time_limit_s)
    times = np.asarray(times, dtype=np.int64)
    l0 = l0_bound(times, m)
    lpt_c = int(np.bincount(lpt(times[:, None].astype(float), np.zeros(m, dtype=np.int64)), weights=times, minlength=m).max())
    if solver == "cp-sat":
        found = solve_exact(
            times, m, deterministic_limit_s=PCMAX_DETERMINISTIC_SHARE * time_limit_s,
            time_limit_s=None if deterministic else time_limit_s, seed=seed,
        )
        loads = np.bincount(found.assignment, weights=times, minlength=m)
        return PcmaxResult(
            found.makespan, found.lower_bound, "OPTIMAL" if found.optimal else "FEASIBLE", m, len(times), loads,
            l0, lpt_c, found.heuristic, found.probes, found.wall_clock_cut, found.message,
        )
    estimates = pcmax_estimates(m, times)
    bound = max(int(np.ceil(lower_bounds(estimates).best_s - 1e-9)), lower_bound(times, m, lpt_c))
    result = optimize(estimates, float(bound), solver=solver, time_limit_s=time_limit_s, formulation="per-request", seed=seed, deterministic=deterministic)
    loads = np.bincount(result.assignment, weights=times, minlength=m)
    makespan = int(round(loads.max()))
    lower = max(bound, int(np.ceil(result.lower_bound - 1e-6)))
    status = "OPTIMAL" if makespan <= lower else ("HEURISTIC" if result.status == "HEURISTIC" else "FEASIBLE")
    return PcmaxResult(
        makespan, min(lower, makespan), status, m, len(times), loads, l0, lpt_c, lpt_c, (), result.wall_clock_cut, result.message
    )
