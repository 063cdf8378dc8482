"""`plan validate`: check a plan file against its trace and cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import optimizer
from commands.common import (
    EngineOpt,
    FormatOpt,
    ModelOpt,
    RateOpt,
    ReplicasOpt,
    SeedOpt,
    SourceOpt,
    out,
    read_trace,
    user_errors,
)

app = typer.Typer(
    help="Check plan files.",
    epilog="Example: python cli.py plan validate plan.csv --trace traces/sharegpt_batch_2k.csv",
    no_args_is_help=True,
)


@app.command("validate", epilog="Example: python cli.py plan validate plan.csv --trace traces/sharegpt_batch_2k.csv")
def plan_validate(
    plan: Annotated[Path, typer.Argument(help="Plan CSV to check.", show_default=False)],
    trace: Annotated[Path, typer.Option("--trace", help="The trace the plan is for.", show_default=False)],
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
) -> None:
    """Check a plan against its trace and cluster; list every rule it breaks."""
    with user_errors():
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        table = optimizer.read_plan(plan)
        problems = optimizer.plan_violations(table, loaded.requests, cluster, path=plan)
    if problems:
        for problem in problems[:20]:
            typer.echo(f"error: {problem}", err=True)
        if len(problems) > 20:
            typer.echo(f"error: ... and {len(problems) - 20} more", err=True)
        raise typer.Exit(1)
    out.print(f"{plan}: valid plan of {len(table):,} requests on {len(cluster)} replicas")
