"""Command line of the fleet optimizer: a thin typer app over the `optimizer` package.

Run ``python cli.py --help``. Every command turns the package's errors into one line on
stderr and exit code 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.status import Status
from rich.table import Column, Table

import optimizer
from optimizer.common.errors import OptimizerError
from optimizer.common.files import atomic_output, check_folder
from optimizer.common.options import parse_options
from optimizer.fleet.calibration import (
    calibrate,
    calibration_lines,
    load_profiles,
    read_runs,
    write_profiles,
)
from optimizer.fleet.gpus import find_gpu
from optimizer.fleet.kernels import engine_versions
from optimizer.fleet.measurements import (
    builtin_profiles,
    fit_profiles,
    holdout_error,
    read_measurements,
)
from optimizer.fleet.sources import profile_for
from optimizer.planning.pcmax import read_pcmax, solve_pcmax
from optimizer.reporting.compare import COLUMNS as COMPARE_COLUMNS
from optimizer.reporting.compare import (
    POLICY_NAMES,
    display_rows,
    parse_names,
    summary_row,
    write_comparison,
)
from optimizer.reporting.compare import compare as run_comparison
from optimizer.reporting.report import check_report_dir, write_report
from optimizer.reporting.report import render as render_report
from optimizer.serving.batching import POLICIES as BATCHING_POLICIES
from optimizer.serving.deviation import Deviations, parse_failure, parse_slowdown
from optimizer.serving.metrics import with_slo_targets
from optimizer.serving.predictor import (
    LengthBelief,
    fit_predictor,
    noisy_oracle,
    prediction_error,
    split_history,
    with_predictions,
)
from optimizer.serving.results import read_simulation

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
profile_app = typer.Typer(
    help="Show and fit the GPU performance profiles behind every time estimate.",
    epilog="Example: python cli.py profile show --gpu h100 --tp 4",
    no_args_is_help=True,
)
app.add_typer(trace_app, name="trace")
app.add_typer(plan_app, name="plan")
app.add_typer(profile_app, name="profile")

# Wide enough for the tables when output goes to a file or a pipe (rich's default there is 80).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
BUILTIN_MEASUREMENTS = resources.files("optimizer.fleet").joinpath("data", "splitwise_perf_model.csv")

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
ProfilesOpt = Annotated[
    Optional[Path],
    typer.Option("--profiles", help="Profile file (.json, from `profile calibrate`) or GPU measurements CSV (Splitwise perf_model columns, fitted) used for the configurations they cover."),
]
EngineOpt = Annotated[
    str,
    typer.Option("--engine", help="Serving engine of the kernel tables, NAME[==VERSION]: vllm, sglang, trtllm (default: the bundled measurements where they exist, else the newest vLLM the tables have)."),
]
SourceOpt = Annotated[
    str,
    typer.Option("--source", help="Where iteration times come from: auto, measured, kernels, roofline."),
]
TraceArg = Annotated[Path, typer.Argument(help="Trace file (CSV, JSON lines or Parquet).", show_default=False)]
LengthErrorOpt = Annotated[
    Optional[float],
    typer.Option("--length-error", help="Noisy-oracle predictions: predicted = actual x lognormal error with this sigma (seeded by --seed); plans use them."),
]
PredictorOpt = Annotated[
    Optional[Path],
    typer.Option("--predictor", help="History trace (known output lengths) to fit the output-length predictor on; plans use its predictions."),
]
JitterOpt = Annotated[float, typer.Option("--jitter", help="Arrival jitter: each request arrives at max(0, planned + jitter x N(0,1)) seconds (seeded).")]
SlowOpt = Annotated[list[str], typer.Option("--slow", help="REPLICA@SECONDS:FACTOR: the replica's iterations take FACTOR times as long from then on (repeatable).")]
FailOpt = Annotated[list[str], typer.Option("--fail", help="REPLICA@SECONDS: the replica fails then; its requests are placed again (repeatable).")]
SloTtftOpt = Annotated[Optional[float], typer.Option("--slo-ttft", help="Time-to-first-token target (s) of every request without its own.")]
SloTbtOpt = Annotated[Optional[float], typer.Option("--slo-tbt", help="Mean time-between-tokens target (s) of every request without its own.")]
SloE2eOpt = Annotated[Optional[float], typer.Option("--slo-e2e", help="End-to-end latency target (s) of every request without its own.")]


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


def _predict(requests, length_error: float | None, history: Path | None, seed: int):
    """The trace with the predictions plans use, and the belief about their error
    (`optimizer.serving.predictor`): noisy oracle, fitted predictor, or the trace's own column."""
    if length_error is not None and history is not None:
        raise OptimizerError("Give either --length-error or --predictor, not both.")
    if length_error is not None:
        predicted = noisy_oracle(requests["output_tokens"].to_numpy(dtype=float), length_error, seed)
        return with_predictions(requests, predicted), LengthBelief.lognormal(length_error)
    if history is not None:
        predictor = fit_predictor(optimizer.load_trace(history).requests)
        return with_predictions(requests, predictor.predict(requests)), predictor.belief
    return requests, LengthBelief.exact()


def _deviations(jitter: float, slow: list[str], fail: list[str], seed: int, cluster) -> Deviations:
    deviations = Deviations(jitter, tuple(parse_slowdown(t) for t in slow), tuple(parse_failure(t) for t in fail), seed)
    deviations.check(cluster)
    return deviations


def _profiles(path: Path | None) -> dict | None:
    """The user's profiles (a profile file or measurements), taking precedence over the bundled sources."""
    return None if path is None else load_profiles(path)


def _print_sources(cluster, profiles) -> None:
    """One line per replica kind: where its iteration times come from, and the fit error."""
    for number, replica in enumerate(cluster.first_of_each_kind):
        kind = replica.kind
        profile = profile_for(replica, profiles)
        error = "" if profile.prefill_error_pct != profile.prefill_error_pct or profile.source.startswith("roofline") else \
            f" (fit {profile.prefill_error_pct:.1f}% prefill, {profile.decode_error_pct:.1f}% decode)"
        out.print(f"{'Times' if number == 0 else '':9}{kind}: {profile.source}{error}")


def _bounds_line(bounds: optimizer.Bounds) -> str:
    parts = [f"{name} {value:,.1f} s" + (" (binds)" if name == bounds.binding else "")
             for name, value in (("work", bounds.work_s), ("chain", bounds.chain_s), ("pcmax", bounds.pcmax_s))]
    return ", ".join(parts)


class LiveStatus:
    """A live line on stderr while long work runs, on interactive terminals only: the
    solver's incumbent, bound and gap while planning, the simulated time while simulating."""

    def __init__(self, enabled: bool, label: str = ""):
        self.status = Status(label or "working ...", console=Console(stderr=True)) if enabled else None
        self.label = label
        self.shown_at = 0.0

    def __enter__(self) -> "LiveStatus":
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.stop()

    @property
    def solving(self):
        """Progress callback of `optimizer.planning.solve`, or None when nothing is shown."""
        return self._solving if self.status is not None else None

    @property
    def simulating(self):
        """Progress callback of `optimizer.reporting.compare` (what runs, simulated seconds), or None."""
        return self._simulating if self.status is not None else None

    def _solving(self, incumbent: float, bound: float, elapsed_s: float) -> None:
        gap = incumbent / bound - 1 if bound > 0 else float("inf")
        self.status.update(f"incumbent {incumbent:,.2f} s  bound {bound:,.2f} s  gap {gap:.3%}  elapsed {elapsed_s:.1f} s")

    def _simulating(self, label: str, now_s: float) -> None:
        # A new step (time 0) shows at once; the clock at most 10 times a second.
        if now_s == 0.0 or time.monotonic() - self.shown_at > 0.1:
            self.shown_at = time.monotonic()
            self.status.update(f"{label}  simulated time {now_s:,.1f} s" if now_s else label)


SolverOpt = Annotated[str, typer.Option("--solver", help="Solver backend (cp-sat, scip, cbc) or heuristic (lpt, least-loaded, round-robin); see `solvers`.")]
TimeLimitOpt = Annotated[float, typer.Option("--time-limit", help="Wall-clock seconds for the whole planning step.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (no progress, no summary).")]


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
        loaded = _load(trace, format, arrival_rate, seed, model)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        user_profiles = _profiles(profiles)
        requests, _ = _predict(loaded.requests, length_error, predictor, seed)
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
    _print_sources(cluster, user_profiles)
    how = f"{result.solver}, {result.formulation} model, started from {result.incumbent:,.1f} s" if result.formulation else result.solver
    out.print(f"Plan     {result.status} ({how}) in {result.solve_time_s:.2f} s")
    out.print(f"         estimated makespan {result.objective:,.1f} s, lower bound {result.lower_bound:,.1f} s, gap {result.gap:.3%}")
    out.print(f"Bounds   {_bounds_line(result.bounds)}")
    per_replica = result.plan.groupby("replica", sort=False).size()
    out.print(f"         requests per replica: min {per_replica.min():,}, max {per_replica.max():,}; last planned end {result.plan['planned_end_s'].max():,.1f} s")
    out.print(f"Wrote    {out_path} ({len(result.plan):,} rows, valid)")


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


@app.command(epilog="Example: python cli.py bounds traces/AzureLLMInferenceTrace_conv.csv --replicas h100-tp4:2,a100-tp4:2")
def bounds(
    trace: TraceArg,
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    profiles: ProfilesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bounds as JSON.")] = False,
) -> None:
    """Print the lower bounds on the makespan of a trace on a cluster, and which one binds."""
    with user_errors():
        loaded = _load(trace, format, arrival_rate, seed, model)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        found, estimates = optimizer.trace_bounds(loaded.requests, cluster, profiles=_profiles(profiles))
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
        return
    out.print(f"{loaded.path}: {loaded.num_requests:,} requests on {cluster.describe()}")
    table = Table("replica kind", "replicas", "KV capacity tokens", "best batch B*", "mean work s", "mean latency s")
    for k, kind in enumerate(estimates.kinds):
        replica = cluster.replicas[int(estimates.replicas_of_kind[k][0])]
        eligible = estimates.eligible[:, k]
        table.add_row(
            kind,
            str(len(estimates.replicas_of_kind[k])),
            f"{replica.kv_capacity_tokens:,}",
            f"{estimates.batch_size[k]:.0f}",
            f"{estimates.work_s[eligible, k].mean():.3f}" if eligible.any() else "-",
            f"{estimates.latency_s[eligible, k].mean():.2f}" if eligible.any() else "-",
        )
    out.print(table)
    bound_table = Table("lower bound", "seconds", "")
    for name, value in (("work", found.work_s), ("chain", found.chain_s), ("pcmax", found.pcmax_s)):
        bound_table.add_row(name, f"{value:,.2f}", "binds" if name == found.binding else "")
    out.print(bound_table)


@app.command(epilog="Example: python cli.py simulate traces/sharegpt_batch_2k.csv --dispatch repair --length-error 0.5 --fail h100-tp4-0@100 --out requests.csv")
def simulate(
    trace: TraceArg,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Per-request CSV to write (request_id, replica, arrival_s, start_s, first_token_s, finish_s, preemptions, restarts).")] = None,
    summary_path: Annotated[Optional[Path], typer.Option("--summary", help="JSON summary to write (makespan_s, utilization, latency percentiles, ...).")] = None,
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    plan: Annotated[Optional[Path], typer.Option("--plan", help="Plan CSV to follow (with --dispatch plan, the default when a plan is given, or repair).")] = None,
    dispatch: Annotated[Optional[str], typer.Option("--dispatch", help="plan, repair (the plan repaired online; plans first if no --plan), round-robin, least-outstanding (default without a plan), least-work, random.")] = None,
    dispatch_option: Annotated[list[str], typer.Option("--dispatch-option", help="KEY=NUMBER option of the repairer (repeatable): slack_s, max_moves, interval_s.")] = [],
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
    profiles: ProfilesOpt = None,
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
        loaded = _load(trace, format, arrival_rate, seed, model)
        loaded = dataclasses.replace(loaded, requests=with_slo_targets(loaded.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e))
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        user_profiles = _profiles(profiles)
        requests, belief = _predict(loaded.requests, length_error, predictor, seed)
        deviations = _deviations(jitter, slow, fail, seed, cluster)
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
            )
        figures = optimizer.summary(result, loaded.requests)
        if out_path is not None:
            optimizer.write_simulation(result, out_path)
        if summary_path is not None:
            with atomic_output(summary_path) as tmp:
                tmp.write_text(json.dumps(figures, indent=2) + "\n")
    if quiet:
        return
    out.print(f"Simulated {figures['num_requests']:,} requests on {cluster.describe()} ({policy} batching, {chosen} dispatch{', ' + made_plan if made_plan else ''})")
    if length_error is not None or predictor is not None:
        error = prediction_error(requests["predicted_output_tokens"].to_numpy(dtype=float), loaded.requests["output_tokens"].to_numpy(dtype=float))
        out.print(f"predicted lengths: MAE {error['mae_tokens']:,.1f} tokens, {error['within_50']:.1%} within 50, {error['within_100']:.1%} within 100")
    out.print(f"makespan {figures['makespan_s']:,.1f} s, utilization {figures['utilization']:.1%}, preemptions {figures['preemptions']:,}, replica-hours {figures['replica_hours']:.2f}")
    if figures["moved_requests"] or figures["restarted_requests"] or deviations.failures:
        out.print(f"moved {figures['moved_requests']:,} requests, restarted {figures['restarted_requests']:,} after failures, redid {figures['redone_tokens']:,} tokens")
    table_out = Table("latency s", "p50", "p90", "p99")
    for name in ("ttft_s", "tbt_s", "e2e_s", "queueing_s"):
        table_out.add_row(name, *(f"{figures[name][k]:,.3f}" for k in ("p50", "p90", "p99")))
    out.print(table_out)
    if "slo_attainment" in figures:
        out.print(f"SLO attainment {figures['slo_attainment']:.1%}")
    for path in (out_path, summary_path):
        if path is not None:
            out.print(f"Wrote {path}")


@app.command(epilog="Example: python cli.py compare traces/sharegpt_batch_2k.csv --length-error 0.5 --out compare.csv --out compare.md --report report")
def compare(
    trace: TraceArg,
    out_paths: Annotated[list[Path], typer.Option("--out", help="Write the table here: .csv (every column) or .md (Markdown); repeatable.")] = [],
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Also write the HTML report and its PNG charts into this folder.")] = None,
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    policies: Annotated[str, typer.Option("--policies", help=f"Comma-separated policies to compare: {', '.join(POLICY_NAMES)}.")] = ",".join(POLICY_NAMES),
    batching: Annotated[str, typer.Option("--batching", help="Comma-separated batching policies, each run with every policy: vllm, sarathi, orca, static, s3, uellm, slai, hybrid.")] = "sarathi",
    solver: SolverOpt = "cp-sat",
    time_limit: Annotated[float, typer.Option("--time-limit", help="Wall-clock seconds for each plan (the mip and repair rows share one).")] = 10.0,
    length_error: LengthErrorOpt = None,
    predictor: PredictorOpt = None,
    jitter: JitterOpt = 0.0,
    slow: SlowOpt = [],
    fail: FailOpt = [],
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
    """Run every policy on the same trace, fleet, seed and deviations, and print one table.

    Policies: round-robin, least-outstanding, least-work (online dispatch), lpt (the LPT
    plan followed), mip (the solver's plan followed blindly), repair (that plan repaired
    online). "/ bound" divides each makespan by the hindsight lower bound, computed from
    the actual output lengths, so predictions never flatter a policy.
    """
    with user_errors():
        for path in out_paths:
            if path.suffix.lower() not in (".csv", ".md"):
                raise OptimizerError(f"--out {path}: give a .csv or .md file.")
            check_folder(path)
        if report_dir is not None:
            check_report_dir(report_dir)
        chosen = parse_names(policies, POLICY_NAMES, "policy")
        batchings = parse_names(batching, list(BATCHING_POLICIES), "batching policy")
        loaded = _load(trace, format, arrival_rate, seed, model)
        actual = with_slo_targets(loaded.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        requests, belief = _predict(actual, length_error, predictor, seed)
        deviations = _deviations(jitter, slow, fail, seed, cluster)
        with LiveStatus(not quiet and sys.stderr.isatty()) as status:
            result = run_comparison(
                requests, cluster, policies=chosen, batching=batchings, solver=solver, time_limit_s=time_limit, seed=seed,
                deviations=deviations, belief=belief, profiles=_profiles(profiles),
                progress=status.simulating, solve_progress=status.solving,
            )
        notes = _report_notes(loaded, cluster, length_error, predictor, deviations, seed)
        page = figures = None
        if report_dir is not None:
            page, figures = render_report(
                title=f"Comparison on {trace.name}", tables={k: v.requests for k, v in result.simulations.items()},
                replicas=cluster.names, summary=result.table, bounds=result.bounds, plans=result.plans, notes=notes,
            )
        for path in out_paths:
            write_comparison(result.table, path)
        if report_dir is not None:
            index = write_report(report_dir, page, figures)
    if quiet:
        return
    out.print(f"{loaded.path}: {loaded.num_requests:,} requests on {cluster.describe()}; seed {seed}")
    for note in notes[1:]:  # the first, about the trace and fleet, is the line above
        out.print(note)
    out.print(f"hindsight lower bound {result.bounds.best_s:,.1f} s ({_bounds_line(result.bounds)})")
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
        loaded = _load(trace, format, arrival_rate, seed, model)
        requests = with_slo_targets(loaded.requests, ttft_s=slo_ttft, tbt_s=slo_tbt, e2e_s=slo_e2e)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        bounds, hindsight = optimizer.trace_bounds(requests, cluster, profiles=_profiles(profiles))
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


@app.command(epilog="Example: python cli.py predict traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv --out predicted.csv")
def predict(
    trace: TraceArg,
    history: Annotated[Optional[Path], typer.Option("--history", help="Trace with known output lengths to fit on (default: the first part of TRACE itself).")] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="Share of TRACE (by arrival) held out to measure the error when no --history is given.")] = 0.2,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write TRACE with its predicted_output_tokens (native CSV), for solve and simulate.")] = None,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fit the output-length predictor (median per model and prompt-length bucket) and report its error.

    The error is the literature's: mean absolute error and the shares of predictions
    within 50 and 100 tokens, on requests the predictor was not fitted on.
    """
    with user_errors():
        loaded = _load(trace, format, arrival_rate, seed, model)
        requests = loaded.requests
        if history is None:
            fitted_on, judged = split_history(requests, holdout)
            label = f"first {1 - holdout:.0%} of {trace.name} ({len(fitted_on):,} requests)"
        else:
            fitted_on, judged = optimizer.load_trace(history, model=model).requests, requests
            label = f"{history.name} ({len(fitted_on):,} requests)"
        fitted = fit_predictor(fitted_on)
        known = judged[judged["output_tokens"].notna()]
        error = prediction_error(fitted.predict(known), known["output_tokens"].to_numpy(dtype=float)) if len(known) else None
        if out_path is not None:
            optimizer.write_trace(with_predictions(requests, fitted.predict(requests)), out_path)
    if quiet:
        return
    out.print(f"Predictor fitted on {label}: {len(fitted.medians)} (model, prompt-length bucket) medians, overall median {fitted.overall_median:,.0f} tokens")
    if error is not None:
        out.print(f"Error on {error['requests']:,} held-out requests: MAE {error['mae_tokens']:,.1f} tokens, "
                  f"{error['within_50']:.1%} within 50, {error['within_100']:.1%} within 100")
    if out_path is not None:
        out.print(f"Wrote {out_path} ({len(requests):,} requests with predicted_output_tokens)")


@app.command(epilog="Example: python cli.py solvers")
def solvers() -> None:
    """List the planning methods available on this machine."""
    for name, description in optimizer.solvers().items():
        out.print(f"{name:13} {description}")


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
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
) -> None:
    """Check a plan against its trace and cluster; list every rule it breaks."""
    with user_errors():
        loaded = _load(trace, format, arrival_rate, seed, model)
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


def _profile_table(profiles: dict, errors) -> Table:
    table = Table("model", "gpu", "tp", "prefill 512 ms", "prefill 4096 ms", "decode b1 ms", "decode b64 ms",
                  "prefill error %", "decode error %", "source")
    errors = errors.set_index(["model", "gpu", "tp"]) if errors is not None else None
    for key, p in sorted(profiles.items()):
        error = errors.loc[key] if errors is not None and key in errors.index else None
        prefill_error = error["prefill_mape_pct"] if error is not None else p.prefill_error_pct
        decode_error = error["decode_mape_pct"] if error is not None else p.decode_error_pct
        table.add_row(
            p.model, p.gpu, str(p.tp),
            f"{p.prefill_time_ms(512):.1f}", f"{p.prefill_time_ms(4096):.1f}",
            f"{p.decode_time_ms(1, 1024):.1f}", f"{p.decode_time_ms(64, 64 * 1024):.1f}",
            "-" if prefill_error != prefill_error else f"{prefill_error:.2f}",
            "-" if decode_error != decode_error else f"{decode_error:.2f}",
            p.source,
        )
    return table


def _holdout_or_none(measurements):
    """Held-out errors, or None when the measurements lack the points of the held-out split."""
    try:
        return holdout_error(measurements)
    except OptimizerError:
        return None


@profile_app.command("show", epilog="Example: python cli.py profile show --replicas llama-3.1-8b@l40s-tp1,qwen3-32b@h200-tp2 --engine sglang")
def profile_show(
    model: Annotated[Optional[str], typer.Option("--model", help="Only this model (bundled measurements).")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="Only this GPU type (bundled measurements: a100, h100, h100-pcap).")] = None,
    tp: Annotated[Optional[int], typer.Option("--tp", help="Only this tensor-parallel degree (bundled measurements).")] = None,
    replicas: Annotated[Optional[str], typer.Option("--replicas", help="Show the profiles of this cluster's replica kinds instead (any source).")] = None,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    profiles: ProfilesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fitted coefficients as JSON.")] = False,
) -> None:
    """Print profiles (iteration times at reference points), their source and their fit error.

    Without --replicas: the bundled Splitwise measurements' profiles, with their held-out error.
    """
    with user_errors():
        if replicas is not None:
            cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
            user = _profiles(profiles)
            chosen = {replica.kind: profile_for(replica, user) for replica in cluster.first_of_each_kind}
            errors = None
        else:
            gpu_name = None if gpu is None else find_gpu(gpu).name
            chosen = {key: p for key, p in builtin_profiles().items()
                      if (model is None or key[0] == model) and (gpu_name is None or key[1] == gpu_name) and (tp is None or key[2] == tp)}
            if not chosen:
                raise OptimizerError("No built-in profile matches; run `python cli.py profile show` to list them.")
            errors = holdout_error(read_measurements(BUILTIN_MEASUREMENTS))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for _, p in sorted(chosen.items())], indent=2))
        return
    out.print(_profile_table(chosen, errors))
    if replicas is None:
        out.print("Times from the fitted model; held-out error: fit on batch 1,2,8,32,64 x prompt 128,512,2048,8192, tested on the other measurements.")
    else:
        out.print("Fit error: the closed form against its source on points it was not fitted on (kernels), the calibration's held-out runs, or the roofline's band.")


@profile_app.command("calibrate", epilog="Example: python cli.py profile calibrate runs.csv --replica llama-3.1-70b@h100-tp4 --out mine.json")
def profile_calibrate(
    measurements: Annotated[Path, typer.Argument(help="Measured runs: `vllm bench latency` runs (batch_size,input_len,output_len,latency_s) or Splitwise perf_model.csv rows.", show_default=False)],
    replica: Annotated[str, typer.Option("--replica", help="The configuration measured, MODEL@GPU-tpN.", show_default=False)],
    engine: EngineOpt = "",
    out_path: Annotated[Path, typer.Option("--out", help="Profile file to write (use it with --profiles).")] = Path("profile.json"),
    hardware: Annotated[Optional[str], typer.Option("--rows", help="Splitwise files: use the rows of this model@hardware-tpN (default: the replica's).")] = None,
) -> None:
    """Correct the kernel-table profile of one configuration to your own stack with a few measured runs."""
    with user_errors():
        cluster = optimizer.resolve_cluster(replica, engine=engine, source="kernels")
        target = cluster.replicas[0]
        base = profile_for(target)
        table = _calibration_rows(measurements, target, hardware)
        lines = calibration_lines(table)
        calibrated = calibrate(base, table, lines)
        write_profiles([calibrated], out_path)
    out.print(f"Base     {target.kind}: {base.source}")
    out.print(f"Runs     {len(set(lines))} of {measurements} (lines {', '.join(map(str, sorted(set(lines))))})")
    out.print(f"Profile  {calibrated.source.split(', on ')[0]}")
    out.print(f"Error    held out: prefill {calibrated.prefill_error_pct:.1f}%, decode {calibrated.decode_error_pct:.1f}% MAPE on the other runs")
    out.print(f"Wrote    {out_path} (use it with --profiles {out_path})")


def _calibration_rows(path: Path, target, rows: str | None):
    """The measured runs of a calibration: benchmark runs, or one configuration's Splitwise rows."""
    with open(path, encoding="utf-8-sig", errors="replace") as file:
        header = file.readline()
    if "prompt_time" not in header:
        return read_runs(path)
    table = read_measurements(path)
    model, _, rest = (rows or f"{target.model}@{target.gpu}-tp{target.tp}").rpartition("@")
    hardware, _, tp = rest.rpartition("-tp")
    picked = table[(table["model"] == model) & (table["hardware"] == hardware) & (table["tensor_parallel"] == int(tp or 0))]
    if picked.empty:
        found = ", ".join(sorted({f"{m}@{h}-tp{t}" for m, h, t in table[["model", "hardware", "tensor_parallel"]].itertuples(index=False)}))
        raise OptimizerError(f"{path}: no rows of {model}@{hardware}-tp{tp}; pick one with --rows ({found}).")
    picked.attrs["path"] = str(path)
    return picked


@app.command(epilog="Example: python cli.py models")
def models() -> None:
    """List the catalog's models: parameters, layers, KV heads, head dim, context, and what has data."""
    table = Table("model", "params B", "active B", "layers", "KV heads", "head dim", "context", "KV KiB/token", "kind", "config")
    with user_errors():
        for name in optimizer.catalog_names():
            m = optimizer.find_model(name)
            table.add_row(name, f"{m.num_params / 1e9:.1f}", f"{(m.num_active_params or m.num_params) / 1e9:.1f}", str(m.num_layers),
                          str(m.num_kv_heads), str(m.head_dim), f"{m.context_tokens:,}", f"{m.kv_bytes_per_token / 1024:.0f}",
                          f"MoE {m.experts_per_token}/{m.num_experts}" if m.is_moe else "dense", m.source.split(" (")[0])
    out.print(table)
    out.print("Or give a path to a Hugging Face config.json (or its folder) as MODEL: MODEL@GPU-tpN.")


@app.command(epilog="Example: python cli.py gpus")
def gpus() -> None:
    """List GPU types: memory, peak speeds, interconnect, which engines have kernel tables, and sources."""
    table = Table("gpu", "memory GiB", "bf16 TFLOP/s", "HBM GB/s", "interconnect", "kernel tables", "measured", "source")
    with user_errors():
        for g in optimizer.GPUS.values():
            versions = engine_versions(g)
            kernels = "; ".join(f"{e} {', '.join(v)}" for e, v in versions.items()) or "- (roofline)"
            table.add_row(g.aliases[0], f"{g.memory_gib:g}", f"{g.bf16_tflops:g}", f"{g.hbm_gb_per_s:g}", g.interconnect, kernels,
                          "llama2-70b, bloom-176b" if g.measured_as else "-", g.source)
    out.print(table)


@profile_app.command("fit", epilog="Example: python cli.py profile fit my_measurements.csv")
def profile_fit(
    measurements: Annotated[Path, typer.Argument(help="Measurements CSV with Splitwise's perf_model.csv columns.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the fitted coefficients as JSON.")] = False,
) -> None:
    """Fit profiles to your own GPU measurements and report their held-out error."""
    with user_errors():
        table = read_measurements(measurements)
        fitted = fit_profiles(table)
        errors = _holdout_or_none(table)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for _, p in sorted(fitted.items())], indent=2))
        return
    out.print(_profile_table(fitted, errors))
    if errors is None:
        out.print("No held-out error: the file lacks the points of the standard split.")
    out.print(f"Use them with --profiles {measurements} on solve and bounds.")


if __name__ == "__main__":
    app()
