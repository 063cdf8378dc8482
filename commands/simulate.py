"""`simulate`: replay a trace iteration by iteration on a cluster."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

import optimizer
from optimizer.common.errors import OptimizerError
from optimizer.common.files import all_or_nothing, atomic_output, check_output
from optimizer.reporting.trace_events import write_trace_events
from optimizer.common.options import parse_options
from optimizer.serving.metrics import with_slo_targets
from optimizer.serving.predictor import prediction_error
from optimizer.serving.prefix_cache import cache_summary
from commands.common import (
    PrefixTextOpt,
    SamplesOpt,
    SharedPrefixOpt,
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
    SloE2eOpt,
    SloTbtOpt,
    SloTtftOpt,
    SlowOpt,
    SourceOpt,
    TraceArg,
    out,
    parse_deviations,
    read_profiles,
    read_trace,
    user_errors,
    with_predicted_lengths,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py simulate traces/sharegpt_batch_2k.csv --dispatch repair --length-error 0.5 --fail h100-tp4-0@100 --out requests.csv")
def simulate(
    trace: TraceArg,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Per-request CSV to write (request_id, replica, arrival_s, start_s, first_token_s, finish_s, preemptions, restarts).")] = None,
    summary_path: Annotated[Optional[Path], typer.Option("--summary", help="JSON summary to write (makespan_s, utilization, latency percentiles, ...).")] = None,
    events_path: Annotated[Optional[Path], typer.Option("--trace-events", metavar="FILE.json", help="Chrome/Perfetto trace-event JSON to write: one track per replica, each request a slice (prefill and decode nested); open it in ui.perfetto.dev or chrome://tracing.")] = None,
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    plan: Annotated[Optional[Path], typer.Option("--plan", help="Plan CSV to follow (with --dispatch plan, the default when a plan is given, or repair).")] = None,
    dispatch: Annotated[Optional[str], typer.Option("--dispatch", help="plan, repair (the plan repaired online; plans first if no --plan), round-robin, least-outstanding (default without a plan), least-work, random, cache-affinity (SGLang's cache-aware router).")] = None,
    dispatch_option: Annotated[list[str], typer.Option("--dispatch-option", help="KEY=NUMBER option of the dispatcher (repeatable): repair's slack_s, max_moves, interval_s; cache-affinity's cache_threshold, balance_abs, balance_rel.")] = [],
    policy: Annotated[str, typer.Option("--policy", help="Batching policy of every replica: vllm, sarathi, orca, static, s3, uellm, slai, hybrid ('repair' is short for --dispatch repair).")] = "sarathi",
    policy_option: Annotated[list[str], typer.Option("--policy-option", help="KEY=NUMBER option of the batching policy (repeatable), e.g. budget_tokens=256 for slai.")] = [],
    length_error: LengthErrorOpt = None,
    predictor: PredictorOpt = None,
    jitter: JitterOpt = 0.0,
    slow: SlowOpt = [],
    fail: FailOpt = [],
    slo_ttft: SloTtftOpt = None,
    slo_tbt: SloTbtOpt = None,
    slo_e2e: SloE2eOpt = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for the plan that --dispatch repair makes when no --plan is given.")] = 10.0,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    shared_prefix_tokens: SharedPrefixOpt = None,
    samples_per_prompt: SamplesOpt = None,
    prefix_text: PrefixTextOpt = None,
    profiles: ProfilesOpt = None,
    no_prefix_cache: Annotated[bool, typer.Option("--no-prefix-cache", help="Replicas reuse no prompt prefix (results as without prefix information).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Replay a trace iteration by iteration on a cluster and report what it would really take.

    The engines run the actual output lengths; plans and dispatch see the predictions.
    """
    with user_errors():
        if policy == "repair":
            if dispatch not in (None, "repair"):
                raise OptimizerError(f"--policy repair means --dispatch repair, but --dispatch {dispatch} was given.")
            policy, dispatch = "sarathi", "repair"
        for path in (out_path, summary_path, events_path):
            if path is not None:
                check_output(path)  # before any work: a bad path costs nothing
        loaded = read_trace(trace, format, arrival_rate, seed, model, shared_prefix_tokens, samples_per_prompt, prefix_text)
        loaded = dataclasses.replace(loaded, requests=with_slo_targets(loaded.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e))
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        user_profiles = read_profiles(profiles)
        requests, belief = with_predicted_lengths(loaded.requests, length_error, predictor, seed)
        deviations = parse_deviations(jitter, slow, fail, seed, cluster)
        table = optimizer.read_plan(plan) if plan is not None else None
        if table is not None:
            optimizer.validate_plan(table, requests, cluster, path=plan)
        chosen = dispatch or ("plan" if table is not None else "least-outstanding")
        made_plan = ""
        if chosen == "repair" and table is None:
            planned = optimizer.solve(requests, cluster, time_limit_s=time_limit, seed=seed, profiles=user_profiles)
            table = planned.plan
            made_plan = f"planned first ({planned.status}, estimated makespan {planned.objective:,.1f} s)"
        label = f"simulating {chosen} dispatch, {policy} batching"
        with LiveStatus(not quiet and sys.stderr.isatty(), label) as status:
            simulating = status.simulating
            result = optimizer.simulate(
                requests, cluster, dispatch=chosen, policy=policy, plan=table, seed=seed,
                profiles=user_profiles, policy_options=parse_options(policy_option),
                dispatch_options=parse_options(dispatch_option), deviations=deviations, belief=belief,
                progress=(lambda now_s: simulating(label, now_s)) if simulating else None,
                prefix_cache=not no_prefix_cache,
            )
        figures = {**optimizer.summary(result, loaded.requests), **cache_summary(result.replicas)}
        with all_or_nothing():  # every output of the run, or none
            if out_path is not None:
                optimizer.write_simulation(result, out_path)
            if summary_path is not None:
                with atomic_output(summary_path) as tmp:
                    tmp.write_text(json.dumps(figures, indent=2) + "\n")
            if events_path is not None:
                write_trace_events(result.requests, cluster.names, events_path)
    if quiet:
        return
    out.print(f"Simulated {figures['num_requests']:,} requests on {cluster.describe()} ({policy} batching, {chosen} dispatch{', ' + made_plan if made_plan else ''})")
    if length_error is not None or predictor is not None:
        error = prediction_error(requests["predicted_output_tokens"].to_numpy(dtype=float), loaded.requests["output_tokens"].to_numpy(dtype=float))
        out.print(f"predicted lengths: MAE {error['mae_tokens']:,.1f} tokens, {error['within_50']:.1%} within 50, {error['within_100']:.1%} within 100")
    out.print(f"makespan {figures['makespan_s']:,.1f} s, utilization {figures['utilization']:.1%}, preemptions {figures['preemptions']:,}, replica-hours {figures['replica_hours']:.2f}")
    if "prefix_cache" in figures:
        cache = figures["prefix_cache"]
        out.print(f"prefix cache: hit rate {cache['hit_rate']:.1%}, {cache['tokens_saved']:,} prompt tokens saved, {cache['evicted_blocks']:,} blocks evicted; "
                  "per replica " + ", ".join(f"{name} {r['hit_rate']:.0%}" for name, r in cache["per_replica"].items()))
    if figures["moved_requests"] or figures["restarted_requests"] or deviations.failures:
        out.print(f"moved {figures['moved_requests']:,} requests, restarted {figures['restarted_requests']:,} after failures, redid {figures['redone_tokens']:,} tokens")
    table_out = Table("latency s", "p50", "p90", "p99")
    for name in ("ttft_s", "tbt_s", "e2e_s", "queueing_s"):
        table_out.add_row(name, *(f"{figures[name][k]:,.3f}" for k in ("p50", "p90", "p99")))
    out.print(table_out)
    if "slo_attainment" in figures:
        out.print(f"SLO attainment {figures['slo_attainment']:.1%}")
    for path in (out_path, summary_path, events_path):
        if path is not None:
            out.print(f"Wrote {path}")
