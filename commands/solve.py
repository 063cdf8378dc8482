"""`solve`: plan a trace on a cluster and write the plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import optimizer
from commands.common import (
    EngineOpt,
    FormatOpt,
    LengthErrorOpt,
    LiveStatus,
    ModelOpt,
    PredictorOpt,
    ProfilesOpt,
    QuietOpt,
    RateOpt,
    ReplicasOpt,
    SeedOpt,
    SolverOpt,
    SourceOpt,
    TimeLimitOpt,
    TraceArg,
    bounds_line,
    out,
    print_sources,
    read_profiles,
    read_trace,
    user_errors,
    with_predicted_lengths,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py solve traces/sharegpt_batch_2k.csv --replicas h100-tp4:4,a100-tp4:4 --time-limit 10 --out plan.csv")
def solve(
    trace: TraceArg,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the plan CSV.")] = Path("plan.csv"),
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    solver: SolverOpt = "cp-sat",
    time_limit: TimeLimitOpt = 10.0,
    formulation: Annotated[str, typer.Option("--formulation", help="auto, per-request (one Boolean per request and replica) or class (counts per cost class and replica kind).")] = "auto",
    length_error: LengthErrorOpt = None,
    predictor: PredictorOpt = None,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    profiles: ProfilesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Plan a trace on a cluster and write the plan as CSV.

    Plans use predicted output lengths where the trace has them (or --length-error /
    --predictor make them), else the actual ones.
    """
    with user_errors():
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        user_profiles = read_profiles(profiles)
        requests, _ = with_predicted_lengths(loaded.requests, length_error, predictor, seed)
        with LiveStatus(not quiet and sys.stderr.isatty(), "solving ...") as status:
            result = optimizer.solve(
                requests, cluster, solver=solver, time_limit_s=time_limit, formulation=formulation,
                seed=seed, profiles=user_profiles, progress=status.solving,
            )
        optimizer.validate_plan(result.plan, loaded.requests, cluster)
        optimizer.write_plan(result.plan, out_path)
    if quiet:
        return
    kind = "offline batch" if loaded.is_offline_batch else "timed arrivals"
    out.print(f"Trace    {loaded.path} ({loaded.format}): {loaded.num_requests:,} requests, {kind}")
    for note in loaded.notes:
        out.print(f"         {note}")
    out.print(f"Cluster  {cluster.describe()} ({len(cluster)} replicas serving {', '.join(cluster.models)})")
    print_sources(cluster, user_profiles)
    how = f"{result.solver}, {result.formulation} model, started from {result.incumbent:,.1f} s" if result.formulation else result.solver
    out.print(f"Plan     {result.status} ({how}) in {result.solve_time_s:.2f} s")
    out.print(f"         estimated makespan {result.objective:,.1f} s, lower bound {result.lower_bound:,.1f} s, gap {result.gap:.3%}")
    out.print(f"Bounds   {bounds_line(result.bounds)}")
    per_replica = result.plan.groupby("replica", sort=False).size()
    out.print(f"         requests per replica: min {per_replica.min():,}, max {per_replica.max():,}; last planned end {result.plan['planned_end_s'].max():,.1f} s")
    out.print(f"Wrote    {out_path} ({len(result.plan):,} rows, valid)")
