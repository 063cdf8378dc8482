"""`trace stats` and `trace convert`: inspect and rewrite request traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import optimizer
from commands.common import (
    FormatOpt,
    ModelOpt,
    RateOpt,
    SeedOpt,
    TraceArg,
    out,
    read_trace,
    user_errors,
)

app = typer.Typer(
    help="Inspect and convert request traces.",
    epilog="Example: python cli.py trace stats traces/AzureLLMInferenceTrace_conv.csv",
    no_args_is_help=True,
)


@app.command("stats", epilog="Example: python cli.py trace stats traces/AzureLLMInferenceTrace_code.csv")
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
        stats = optimizer.trace_stats(read_trace(trace, format, arrival_rate, seed, model))
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


@app.command("convert", epilog="Example: python cli.py trace convert traces/AzureLLMInferenceTrace_conv.csv --out conv.parquet")
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
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        optimizer.write_trace(loaded.requests, out_path)
    out.print(f"Wrote {out_path} ({loaded.num_requests:,} requests from the {loaded.format} trace)")
