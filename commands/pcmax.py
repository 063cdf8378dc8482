"""`pcmax`: solve a pure P||Cmax instance from the scheduling literature."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from optimizer.planning.pcmax import read_pcmax, solve_pcmax
from commands.common import (
    SeedOpt,
    SolverOpt,
    TimeLimitOpt,
    out,
    user_errors,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py pcmax instance.txt --time-limit 10")
def pcmax(
    instance: Annotated[Path, typer.Argument(help="P||Cmax instance: line 1 machines m, line 2 jobs n, then n processing times.", show_default=False)],
    solver: SolverOpt = "cp-sat",
    time_limit: TimeLimitOpt = 10.0,
    seed: SeedOpt = 0,
) -> None:
    """Solve a pure P||Cmax instance (identical machines) and print makespan, lower bound and status."""
    with user_errors():
        m, times = read_pcmax(instance)
        result = solve_pcmax(m, times, solver=solver, time_limit_s=time_limit, seed=seed)
    out.print(f"makespan: {result.makespan}")
    out.print(f"lower bound: {result.lower_bound}")
    out.print(f"status: {result.status}")
