"""`pcmax`: solve a pure P||Cmax instance from the scheduling literature."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands.common import (
    DeterministicOpt,
    solver_warnings,
    SeedOpt,
    SolverOpt,
    TimeLimitOpt,
    out,
    user_errors,
)
from optimizer.planning.pcmax import read_pcmax, solve_pcmax

app = typer.Typer()

@app.command(epilog="Example: python cli.py pcmax examples/pcmax_e3.txt --time-limit 10")
def pcmax(
    instance: Annotated[Path, typer.Argument(help="P||Cmax instance: machines m, jobs n, then n processing times (optionally with a 'machines: m' / 'jobs: n' header).", show_default=False)],
    solver: SolverOpt = "cp-sat",
    time_limit: TimeLimitOpt = 10.0,
    seed: SeedOpt = 0,
    deterministic: DeterministicOpt = False,
    details: Annotated[bool, typer.Option("--details", help="Also print the bounds (L0 and the best), LPT's makespan, the best heuristic's and the number of probes.")] = False,
) -> None:
    """Solve a pure P||Cmax instance (identical machines) and print makespan, lower bound and status.

    With cp-sat: bounds (L0, Dell'Amico-Martello bin packing with lifting), the best of LPT,
    MULTIFIT and Karmarkar-Karp after local search, then a binary search on the makespan with
    CP-SAT bin-packing probes; OPTIMAL when the makespan equals the proven bound.
    """
    with user_errors():
        m, times = read_pcmax(instance)
        result = solve_pcmax(m, times, solver=solver, time_limit_s=time_limit, seed=seed, deterministic=deterministic)
    out.print(f"makespan: {result.makespan}")
    out.print(f"lower bound: {result.lower_bound}")
    out.print(f"status: {result.status}")
    if details:
        out.print(f"bounds: L0 {result.l0_bound}, best {result.lower_bound}; LPT {result.lpt_makespan}, best heuristic {result.heuristic_makespan}; {len(result.probes)} bin-packing probes")
    solver_warnings(result)
