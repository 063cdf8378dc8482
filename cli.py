"""Command line of the fleet optimizer: a thin typer app over the `optimizer` package.

Run ``python cli.py --help``. Every command turns the package's errors into one line on
stderr and exit code 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

import optimizer
from optimizer.errors import OptimizerError

app = typer.Typer(
    help="Plan LLM inference across a fleet of GPU replicas.",
    epilog="Example: python cli.py solve traces/sharegpt_batch_2k.csv --out plan.csv",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trace_app = typer.Typer(
    help="Inspect and convert request traces.",
    epilog="Example: python cli.py trace stats traces/AzureLLMInferenceTrace_conv.csv",
    no_args_is_help=True,
)
plan_app = typer.Typer(
    help="Check plan files.",
    epilog="Example: python cli.py plan validate plan.csv --trace traces/sharegpt_batch_2k.csv",
    no_args_is_help=True,
)
app.add_typer(trace_app, name="trace")
app.add_typer(plan_app, name="plan")

out = Console(highlight=False, soft_wrap=True)

# Options shared by every command that reads a trace.
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", help=f"Trace format, detected from the columns when omitted: {', '.join(optimizer.FORMATS)}."),
]
RateOpt = Annotated[
    Optional[float],
    typer.Option("--arrival-rate", help="Length-only tables: draw Poisson arrivals at this many requests/s (default: offline batch)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random draw.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Serve every request with this model, whatever the trace says.")]
ReplicasOpt = Annotated[
    str,
    typer.Option("--replicas", help="Cluster: inline [MODEL@]GPU-tpN:COUNT groups, e.g. 'h100-tp4:4,a100-tp4:4', or a .toml/.json cluster file."),
]
TraceArg = Annotated[Path, typer.Argument(help="Trace file (CSV, JSON lines or Parquet).", show_default=False)]


@contextmanager
def user_errors() -> Iterator[None]:
    """Show an `OptimizerError` as one line on stderr and exit with code 1."""
    try:
        yield
    except OptimizerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _load(path: Path, format: str | None, arrival_rate: float | None, seed: int, model: str | None) -> optimizer.Trace:
    return optimizer.load_trace(path, format=format, arrival_rate=arrival_rate, seed=seed, model=model)


@app.command(epilog="Example: python cli.py solve traces/sharegpt_batch_2k.csv --replicas h100-tp4:4,a100-tp4:4 --out plan.csv")
def solve(
    trace: TraceArg,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the plan CSV.")] = Path("plan.csv"),
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    solver: Annotated[str, typer.Option("--solver", help=f"Planning method: {', '.join(optimizer.SOLVERS)}.")] = "lpt",
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Plan a trace on a cluster and write the plan as CSV."""
    with user_errors():
        loaded = _load(trace, format, arrival_rate, seed, model)
        cluster = optimizer.resolve_cluster(replicas)
        result = optimizer.solve(loaded.requests, cluster, solver=solver)
        optimizer.validate_plan(result.plan, loaded.requests, cluster)
        optimizer.write_plan(result.plan, out_path)
    if quiet:
        return
    kind = "offline batch" if loaded.is_offline_batch else "timed arrivals"
    out.print(f"Trace    {loaded.path} ({loaded.format}): {loaded.num_requests:,} requests, {kind}")
    for note in loaded.notes:
        out.print(f"         {note}")
    out.print(f"Cluster  {cluster.describe()} ({len(cluster)} replicas serving {', '.join(cluster.models)})")
    unit = result.objective_unit
    out.print(
        f"Plan     {result.solver} ({result.status}): makespan {result.objective:,.0f} {unit}, "
        f"lower bound {result.lower_bound:,.0f} {unit}, ratio {result.ratio_to_bound:.4f}, "
        f"{result.solve_time_s * 1e3:.0f} ms"
    )
    per_replica = result.plan.groupby("replica", sort=False).size()
    out.print(f"         requests per replica: min {per_replica.min():,}, max {per_replica.max():,}")
    out.print(f"Wrote    {out_path} ({len(result.plan):,} rows, valid)")


@app.command(epilog="Example: python cli.py solvers")
def solvers() -> None:
    """List the planning methods."""
    for name, description in optimizer.SOLVERS.items():
        out.print(f"{name:12} {description}")


@trace_app.command("stats", epilog="Example: python cli.py trace stats traces/AzureLLMInferenceTrace_code.csv")
def trace_stats(
    trace: TraceArg,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Print request counts, arrival rate and token-length percentiles of a trace."""
    with user_errors():
        stats = optimizer.trace_stats(_load(trace, format, arrival_rate, seed, model))
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    out.print(f"{stats['file']} ({stats['format']} format)")
    rate = "offline batch" if stats["offline_batch"] else f"{stats['duration_s']:,.1f} s, {stats['rate_per_s']} req/s"
    out.print(f"requests  {stats['num_requests']:,} ({rate}); left out: {stats['num_excluded']:,}")
    out.print("models    " + ", ".join(f"{name} {count:,}" for name, count in stats["models"].items()))
    table = Table("tokens", "known", "mean", "p50", "p90", "p99", "max", "total")
    for column, label in (("prompt_tokens", "prompt"), ("output_tokens", "output"), ("predicted_output_tokens", "predicted")):
        figures = stats[column]
        if figures is not None:
            table.add_row(label, *(f"{figures[k]:,.0f}" if k != "mean" else f"{figures[k]:,.1f}" for k in ("known", "mean", "p50", "p90", "p99", "max", "total")))
    out.print(table)
    for note in stats["notes"]:
        out.print(f"note: {note}")


@trace_app.command("convert", epilog="Example: python cli.py trace convert traces/AzureLLMInferenceTrace_conv.csv --out conv.parquet")
def trace_convert(
    trace: TraceArg,
    out_path: Annotated[Path, typer.Option("--out", help="Native trace to write: .csv, or .parquet.", show_default=False)],
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
) -> None:
    """Rewrite any supported trace in the native format (CSV or Parquet)."""
    with user_errors():
        loaded = _load(trace, format, arrival_rate, seed, model)
        optimizer.write_trace(loaded.requests, out_path)
    out.print(f"Wrote {out_path} ({loaded.num_requests:,} requests from the {loaded.format} trace)")


@plan_app.command("validate", epilog="Example: python cli.py plan validate plan.csv --trace traces/sharegpt_batch_2k.csv")
def plan_validate(
    plan: Annotated[Path, typer.Argument(help="Plan CSV to check.", show_default=False)],
    trace: Annotated[Path, typer.Option("--trace", help="The trace the plan is for.", show_default=False)],
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
) -> None:
    """Check a plan against its trace and cluster; list every rule it breaks."""
    with user_errors():
        loaded = _load(trace, format, arrival_rate, seed, model)
        cluster = optimizer.resolve_cluster(replicas)
        table = optimizer.read_plan(plan)
        problems = optimizer.plan_violations(table, loaded.requests, cluster, path=plan)
    if problems:
        for problem in problems[:20]:
            typer.echo(f"error: {problem}", err=True)
        if len(problems) > 20:
            typer.echo(f"error: ... and {len(problems) - 20} more", err=True)
        raise typer.Exit(1)
    out.print(f"{plan}: valid plan of {len(table):,} requests on {len(cluster)} replicas")


if __name__ == "__main__":
    app()
