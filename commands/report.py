"""`report`: an HTML page with charts from simulation results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

import optimizer
from optimizer.reporting.compare import COLUMNS as COMPARE_COLUMNS
from optimizer.reporting.compare import summary_row
from optimizer.reporting.report import render as render_report
from optimizer.reporting.report import check_report_dir, write_report
from optimizer.serving.metrics import with_slo_targets
from optimizer.serving.results import read_simulation
from commands.common import (
    EngineOpt,
    FormatOpt,
    ModelOpt,
    ProfilesOpt,
    QuietOpt,
    RateOpt,
    ReplicasOpt,
    SeedOpt,
    SloE2eOpt,
    SloTbtOpt,
    SloTtftOpt,
    SourceOpt,
    TraceArg,
    out,
    read_profiles,
    read_trace,
    user_errors,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py report traces/sharegpt_batch_2k.csv --simulation requests.csv --plan plan.csv --out report")
def report(
    trace: TraceArg,
    simulations: Annotated[list[Path], typer.Option("--simulation", help="Per-request CSV written by `simulate --out` (repeatable: latency CDFs side by side); labelled by file name.")],
    plan: Annotated[Optional[Path], typer.Option("--plan", help="Plan CSV the simulations followed: its planned end of each replica is marked on the Gantt charts.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for index.html and the PNG charts (created if missing).")] = Path("report"),
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    title: Annotated[Optional[str], typer.Option("--title", help="Page title (default: the trace's file name).")] = None,
    slo_ttft: SloTtftOpt = None,
    slo_tbt: SloTbtOpt = None,
    slo_e2e: SloE2eOpt = None,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    profiles: ProfilesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write an HTML report with PNG charts from simulation results: Gantt chart per replica,
    running-batch size and utilization over time, latency CDFs, summary table and lower bounds.

    Use the trace, --replicas and options the simulations were run with.
    """
    with user_errors():
        check_report_dir(out_dir)
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        requests = with_slo_targets(loaded.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        bounds, hindsight = optimizer.trace_bounds(requests, cluster, profiles=read_profiles(profiles))
        plan_table = optimizer.read_plan(plan) if plan is not None else None
        if plan_table is not None:
            optimizer.validate_plan(plan_table, requests, cluster, path=plan)
        tables, rows, labels = {}, [], set()
        for path in simulations:
            result = read_simulation(path, cluster, requests=requests)
            label = path.stem if path.stem not in labels else str(path)
            labels.add(label)
            tables[label] = result.requests
            rows.append(summary_row(label, "", optimizer.summary(result, requests, hindsight), bounds.best_s, math.nan))
        summary = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
        notes = [f"Trace {loaded.path} ({loaded.num_requests:,} requests) on {cluster.describe()}."]
        if plan_table is not None:
            notes.append(f"Plan {plan}: last planned end {plan_table['planned_end_s'].max():,.1f} s (black ticks on the Gantt charts).")
        page, figures = render_report(title=title or f"Report on {trace.name}", tables=tables, replicas=cluster.names, summary=summary,
                                      bounds=bounds, plans={label: plan_table for label in tables}, notes=notes)
        index = write_report(out_dir, page, figures)
    if not quiet:
        out.print(f"Wrote {index} and {len(figures)} PNG charts")
