"""`solve`: plan a trace on a cluster and write the plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import optimizer
from optimizer.common.errors import OptimizerError
from optimizer.common.files import all_or_nothing, check_output
from optimizer.reporting.batch_split import check_split_dir, split_batch
from optimizer.traces.batch import cap_predictions
from commands.trace import TokenizerOpt, read_trace_with
from optimizer.fleet.context import fit_context, out_of_range
from optimizer.fleet.sources import profile_for
from optimizer.planning.solve import OBJECTIVES
from optimizer.serving.metrics import with_slo_targets
from commands.common import (
    ContextOpt,
    PrefixTextOpt,
    SamplesOpt,
    SharedPrefixOpt,
    DeterministicOpt,
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
    SloE2eOpt,
    SloTbtOpt,
    SloTtftOpt,
    SolverOpt,
    SourceOpt,
    TimeLimitOpt,
    TraceArg,
    solver_warnings,
    bounds_line,
    out,
    print_sources,
    read_profiles,
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
    deterministic: DeterministicOpt = False,
    objective: Annotated[str, typer.Option("--objective", help="makespan, latency (the largest queueing delay) or slo (the share of requests that can meet their targets); auto: makespan for an offline batch, latency when requests arrive over time.")] = "auto",
    slo_ttft: SloTtftOpt = None,
    slo_tbt: SloTbtOpt = None,
    slo_e2e: SloE2eOpt = None,
    context: ContextOpt = "error",
    formulation: Annotated[str, typer.Option("--formulation", help="auto, per-request (one Boolean per request and replica) or class (counts per cost class and replica kind).")] = "auto",
    length_error: LengthErrorOpt = None,
    predictor: PredictorOpt = None,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    shared_prefix_tokens: SharedPrefixOpt = None,
    samples_per_prompt: SamplesOpt = None,
    prefix_text: PrefixTextOpt = None,
    profiles: ProfilesOpt = None,
    tokenizer: TokenizerOpt = None,
    split_dir: Annotated[Optional[Path], typer.Option("--split-dir", metavar="DIR", help="Batch files: also write DIR/<replica>.jsonl (that replica's input lines, byte for byte, in plan order) and DIR/manifest.json with the command that runs each.")] = None,
    results_dir: Annotated[str, typer.Option("--results-dir", metavar="DIR", help="Where the manifest's commands write the runner's results.")] = "out",
    no_prefix_cache: Annotated[bool, typer.Option("--no-prefix-cache", help="Plan as if replicas reused no prompt prefix (by default a trace that declares shared prefixes is planned by prefix group).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Plan a trace on a cluster and write the plan as CSV.

    Plans use predicted output lengths where the trace has them (or --length-error /
    --predictor make them), else the actual ones. A batch file's max_tokens caps them.
    """
    with user_errors():
        check_output(out_path)
        if split_dir is not None:
            check_split_dir(split_dir)
        loaded = read_trace_with(trace, format, arrival_rate, seed, model, tokenizer, shared_prefix_tokens, samples_per_prompt, prefix_text)
        if split_dir is not None and loaded.format != "batch":
            raise OptimizerError(f"--split-dir cuts batch files (OpenAI batch JSON lines); {trace} is a {loaded.format} trace.")
        unknown = int(loaded.requests["output_tokens"].isna().sum())
        if length_error is not None and unknown:
            raise OptimizerError(
                f"--length-error draws predictions around the actual output lengths, which {unknown:,} requests of "
                f"{trace} lack; give --predictor HISTORY instead (for a batch file: `trace from-results` of a run)."
            )
        if objective not in OBJECTIVES:
            raise OptimizerError(f"Unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}.")
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        user_profiles = read_profiles(profiles)
        fitted = fit_context(loaded.requests, cluster, context, where=str(trace), profiles=read_profiles(profiles))
        targeted = with_slo_targets(fitted.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e)
        requests, _ = with_predicted_lengths(targeted, length_error, predictor, seed)
        if loaded.format == "batch":
            requests = cap_predictions(requests, fitted.requests)
        with LiveStatus(not quiet and sys.stderr.isatty(), "solving ...") as status:
            result = optimizer.solve(
                requests, cluster, solver=solver, time_limit_s=time_limit, formulation=formulation,
                seed=seed, profiles=user_profiles, progress=status.solving, deterministic=deterministic, objective=objective,
                prefix_cache=not no_prefix_cache,
            )
        optimizer.validate_plan(result.plan, requests, cluster)
        with all_or_nothing():  # the split last: if it fails, the plan is not written either
            optimizer.write_plan(result.plan, out_path)
            manifest = split_batch(trace, result.plan, cluster, split_dir, results_dir=results_dir) if split_dir is not None else None
    solver_warnings(result)
    if quiet:
        return
    kind = "offline batch" if loaded.is_offline_batch else "timed arrivals"
    out.print(f"Trace    {loaded.path} ({loaded.format}): {loaded.num_requests:,} requests, {kind}")
    for note in (*loaded.notes, *fitted.notes,
                 *out_of_range(requests, {r.kind: profile_for(r, user_profiles) for r in cluster.first_of_each_kind})):
        out.print(f"         {note}")
    out.print(f"Cluster  {cluster.describe()} ({len(cluster)} replicas serving {', '.join(cluster.models)})")
    print_sources(cluster, user_profiles)
    how = f"{result.solver}, {result.formulation} model, started from {result.incumbent:,.1f} s" if result.formulation else result.solver
    out.print(f"Plan     {result.status} ({how}) in {result.solve_time_s:.2f} s")
    if result.objective_name == "latency":
        out.print(f"         objective latency: largest queueing delay {result.score:,.2f} s (bound {result.score_bound:,.2f} s), within 1% of the best makespan")
    elif result.objective_name == "slo":
        out.print(f"         objective slo: {result.score:.1%} of requests can meet their targets (bound {result.score_bound:.1%})")
    out.print(f"         estimated makespan {result.objective:,.1f} s, lower bound {result.lower_bound:,.1f} s, gap {result.gap:.3%}")
    out.print(f"Bounds   {bounds_line(result.bounds)}")
    per_replica = result.plan.groupby("replica", sort=False).size()
    last_end_s = float(result.plan["planned_end_s"].max())
    out.print(f"         requests per replica: min {per_replica.min():,}, max {per_replica.max():,}; last planned end {last_end_s:,.1f} s")
    if abs(last_end_s - result.objective) > 0.01 * result.objective:
        # The two come from different models of the same plan; say why rather than leave a puzzle.
        out.print("         (the estimated makespan is each replica's work at its best batch B*; the planned ends follow "
                  "each request through the replica's batch slots, which run below B* in a replica's tail)")
    out.print(f"Wrote    {out_path} ({len(result.plan):,} rows, valid)")
    if manifest is not None:
        written = [entry for entry in manifest["replicas"] if entry["file"]]
        moved = sum(entry["moved_requests"] for entry in manifest["replicas"])
        out.print(f"Wrote    {split_dir}/: {len(written)} batch files ({manifest['lines']:,} lines) and manifest.json; run each with its command there")
        if moved:
            out.print(f"         {moved:,} requests of lines with n > 1 run with their line's first request, not where the plan put them")
