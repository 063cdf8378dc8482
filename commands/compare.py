"""`compare`: every policy on the same trace, fleet and deviations, in one table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

import optimizer
from optimizer.common.errors import OptimizerError
from optimizer.common.files import all_or_nothing, check_output
from optimizer.reporting.compare import ALL_POLICY_NAMES, POLICY_NAMES, display_rows, parse_names, write_comparison
from optimizer.reporting.compare import compare as run_comparison
from optimizer.reporting.report import check_report_dir, write_report
from optimizer.reporting.report import render as render_report
from optimizer.serving.batching import POLICIES as BATCHING_POLICIES
from optimizer.serving.deviation import Deviations
from optimizer.fleet.context import fit_context, out_of_range
from optimizer.fleet.sources import profile_for
from optimizer.planning.solve import OBJECTIVES
from optimizer.traces.prefixes import has_prefixes
from optimizer.serving.metrics import with_slo_targets
from commands.common import (
    ContextOpt,
    MAX_TIME_LIMIT_S,
    number_in,
    EngineOpt,
    FailOpt,
    FormatOpt,
    JitterOpt,
    LengthErrorOpt,
    LiveStatus,
    ModelOpt,
    PredictorOpt,
    ProfilesOpt,
    QuietOpt,
    RateOpt,
    ReplicasOpt,
    SeedOpt,
    DeterministicOpt,
    SloE2eOpt,
    SloTbtOpt,
    SloTtftOpt,
    SlowOpt,
    SolverOpt,
    SourceOpt,
    TraceArg,
    bounds_line,
    out,
    parse_deviations,
    read_profiles,
    read_trace,
    user_errors,
    with_predicted_lengths,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py compare traces/sharegpt_batch_2k.csv --length-error 0.5 --out compare.csv --out compare.md --report report")
def compare(
    trace: TraceArg,
    out_paths: Annotated[list[Path], typer.Option("--out", help="Write the table here: .csv (every column) or .md (Markdown); repeatable.")] = [],
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Also write the HTML report and its PNG charts into this folder.")] = None,
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    policies: Annotated[Optional[str], typer.Option("--policies", metavar="LIST", help=f"Comma-separated policies to compare: {', '.join(ALL_POLICY_NAMES)}. Default: {', '.join(POLICY_NAMES)}, and cache-affinity when the trace declares shared prefixes.")] = None,
    batching: Annotated[str, typer.Option("--batching", help="Comma-separated batching policies, each run with every policy: vllm, sarathi, orca, static, s3, uellm, slai, hybrid.")] = "sarathi",
    solver: SolverOpt = "cp-sat",
    time_limit: Annotated[float, typer.Option("--time-limit", metavar="SECONDS", callback=number_in(0, MAX_TIME_LIMIT_S, above=True), help="Wall-clock seconds for each plan (the mip and repair rows share one).")] = 10.0,
    length_error: LengthErrorOpt = None,
    predictor: PredictorOpt = None,
    jitter: JitterOpt = 0.0,
    slow: SlowOpt = [],
    fail: FailOpt = [],
    slo_ttft: SloTtftOpt = None,
    slo_tbt: SloTbtOpt = None,
    slo_e2e: SloE2eOpt = None,
    objective: Annotated[str, typer.Option("--objective", help="What the mip and repair rows' plan optimises: makespan, latency or slo (auto: makespan offline, latency with arrivals).")] = "auto",
    deterministic: DeterministicOpt = False,
    context: ContextOpt = "error",
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    profiles: ProfilesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every policy on the same trace, fleet, seed and deviations, and print one table.

    On a trace with arrivals the table leads with SLO attainment (with --slo-*; also over
    the requests that can meet their targets at all) and latency percentiles.

    Policies: round-robin, least-outstanding, least-work (online dispatch), lpt (the LPT
    plan followed), mip (the solver's plan followed blindly), repair (that plan repaired
    online). "/ bound" divides each makespan by the hindsight lower bound, computed from
    the actual output lengths, so predictions never flatter a policy.
    """
    with user_errors():
        for path in out_paths:
            if path.suffix.lower() not in (".csv", ".md"):
                raise OptimizerError(f"--out {path}: give a .csv or .md file.")
            check_output(path)
        if report_dir is not None:
            check_report_dir(report_dir)
        chosen = parse_names(policies, ALL_POLICY_NAMES, "policy") if policies is not None else None
        batchings = parse_names(batching, list(BATCHING_POLICIES), "batching policy")
        if objective not in OBJECTIVES:
            raise OptimizerError(f"Unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}.")
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        if chosen is None:  # a prefix-cache router is worth a row only where prefixes are shared
            chosen = [*POLICY_NAMES, "cache-affinity"] if has_prefixes(loaded.requests) else list(POLICY_NAMES)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        fitted = fit_context(loaded.requests, cluster, context, where=str(trace), profiles=read_profiles(profiles))
        actual = with_slo_targets(fitted.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e)
        requests, belief = with_predicted_lengths(actual, length_error, predictor, seed)
        deviations = parse_deviations(jitter, slow, fail, seed, cluster)
        with LiveStatus(not quiet and sys.stderr.isatty()) as status:
            result = run_comparison(
                requests, cluster, policies=chosen, batching=batchings, solver=solver, time_limit_s=time_limit, seed=seed,
                deviations=deviations, belief=belief, profiles=read_profiles(profiles),
                progress=status.simulating, solve_progress=status.solving, objective=objective, deterministic=deterministic,
            )
        notes = _report_notes(loaded, cluster, length_error, predictor, deviations, seed)
        notes += list(fitted.notes) + out_of_range(actual, {r.kind: profile_for(r, read_profiles(profiles)) for r in cluster.first_of_each_kind})
        if result.unachievable:
            notes.append(f"{result.unachievable:,} requests cannot meet their targets even alone on the fastest replica; "
                         f"'SLO met (achievable)' leaves them out.")
        page = figures = None
        if report_dir is not None:
            page, figures = render_report(
                title=f"Comparison on {trace.name}", tables={k: v.requests for k, v in result.simulations.items()},
                replicas=cluster.names, summary=result.table, bounds=result.bounds, plans=result.plans, notes=notes,
            )
        with all_or_nothing():
            for path in out_paths:
                write_comparison(result.table, path)
            if report_dir is not None:
                index = write_report(report_dir, page, figures)
    if quiet:
        return
    out.print(f"{loaded.path}: {loaded.num_requests:,} requests on {cluster.describe()}; seed {seed}")
    for note in notes[1:]:  # the first, about the trace and fleet, is the line above
        out.print(note)
    out.print(f"hindsight lower bound {result.bounds.best_s:,.1f} s ({bounds_line(result.bounds)})")
    headers, cells = display_rows(result.table)
    table = Table(*(Column(h, justify="left" if h in ("policy", "batching") else "right") for h in headers))
    for row in cells:
        table.add_row(*row)
    out.print(table)
    for path in out_paths:
        out.print(f"Wrote {path}")
    if report_dir is not None:
        out.print(f"Wrote {index} and {len(figures)} PNG charts")


def _report_notes(loaded, cluster, length_error, predictor, deviations: Deviations, seed: int) -> list[str]:
    kind = "offline batch" if loaded.is_offline_batch else "timed arrivals"
    notes = [f"Trace {loaded.path} ({loaded.format}, {loaded.num_requests:,} requests, {kind}) on {cluster.describe()}; seed {seed}."]
    notes += list(loaded.notes)
    if length_error is not None:
        notes.append(f"Plans and dispatch see predicted lengths: actual x lognormal error, sigma {length_error:g}.")
    elif predictor is not None:
        notes.append(f"Plans and dispatch see lengths predicted by the predictor fitted on {predictor}.")
    if deviations.arrival_jitter_s:
        notes.append(f"Arrivals jittered by {deviations.arrival_jitter_s:g} s x N(0,1).")
    for slow in deviations.slowdowns:
        notes.append(f"{slow.replica} runs {slow.factor:g}x slower from {slow.at_s:g} s.")
    for failure in deviations.failures:
        notes.append(f"{failure.replica} fails at {failure.at_s:g} s.")
    return notes
