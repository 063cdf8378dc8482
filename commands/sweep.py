"""`sweep`: every combination of traces, fleets, policies, deviations and seeds of a spec, each
run as `compare` runs it, on Ray (or serially), in one table and a chart."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optimizer.common.errors import OptimizerError
from optimizer.common.files import all_or_nothing, check_output
from optimizer.reporting.sweep import INSTALL_RAY, check_address, read_spec, run_sweep, to_markdown, write_chart, write_table
from commands.common import QuietOpt, number_in, out, user_errors

app = typer.Typer()


@app.command(epilog="Example: python cli.py sweep examples/sweep.toml --out results.csv --out results.md --chart results.png")
def sweep(
    spec: Annotated[Path, typer.Argument(metavar="SPEC.toml", help="Sweep spec (see examples/sweep.toml).", show_default=False)],
    out_paths: Annotated[list[Path], typer.Option("--out", metavar="FILE", help="Write the table: .csv (every column) or .md; repeatable.")] = [],
    chart: Annotated[Optional[Path], typer.Option("--chart", metavar="FILE", help="Write the chart of makespan over bound per cell (.png).")] = None,
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help="Run on an existing Ray cluster (default: a local Ray instance).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", metavar="N", callback=number_in(0, 4096, integer=True), help="CPUs of the local Ray instance (default: this machine's cores); 0 runs the cells serially here, without Ray.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every cell of a sweep spec and tabulate them, one row per cell in spec order.

    Results are the same bytes whatever the number of workers; a failing cell is a row
    with its parameters and the error, and the other cells still run.
    """
    with user_errors():
        for path in out_paths:
            if path.suffix.lower() not in (".csv", ".md"):
                raise OptimizerError(f"--out {path}: give a .csv or .md file.")
            check_output(path)
        if chart is not None:
            if chart.suffix.lower() != ".png":
                raise OptimizerError(f"--chart {chart}: give a .png file.")
            check_output(chart)
        if address is not None and workers is not None:
            raise OptimizerError("Give --address (an existing cluster) or --workers (a local instance), not both.")
        count = (os.cpu_count() or 1) if workers is None and address is None else (workers or 0)
        if count or address is not None:
            try:
                import ray  # noqa: F401
            except ImportError:
                raise OptimizerError(INSTALL_RAY) from None
        if address is not None:
            check_address(address)
        cells = read_spec(spec)
        if sys.stderr.isatty() and not quiet:
            with Progress(TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
                task = bar.add_task("cells", total=len(cells))
                table = run_sweep(cells, workers=count, address=address, progress=lambda done, total: bar.update(task, completed=done))
        else:
            table = run_sweep(cells, workers=count, address=address)
        with all_or_nothing():
            for path in out_paths:
                write_table(table, path)
            if chart is not None:
                write_chart(table, chart, f"{spec.name}: {len(cells)} cells")
    if quiet:
        return
    where = f"Ray cluster {address}" if address else (f"local Ray, {count} workers" if count else "serially")
    failed = int((table["error"] != "").sum())
    out.print(f"{spec}: {len(cells)} cells ({where}); {failed} failed")
    out.print(to_markdown(table), markup=False)
    for path in [*out_paths, *([chart] if chart else [])]:
        out.print(f"Wrote {path}")
