"""`fleet`: the cheapest mix of candidate GPUs that finishes a batch by a deadline (or the
fastest within a budget, or the cost/makespan Pareto front), checked by simulation."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from optimizer.common.errors import OptimizerError
from optimizer.common.files import all_or_nothing, check_output
from optimizer.planning.candidates import load_candidates, write_fleet
from optimizer.planning.plan import write_plan
from optimizer.planning.sizing import check_options
from optimizer.reporting import pareto
from optimizer.reporting.fleet_choice import (
    choose_fleet,
    choose_within_budget,
    describe,
    per_kind,
    side_by_side,
)
from commands.common import (
    MAX_TIME_LIMIT_S,
    FormatOpt,
    ModelOpt,
    ProfilesOpt,
    QuietOpt,
    RateOpt,
    SeedOpt,
    TraceArg,
    number_in,
    out,
    read_profiles,
    read_trace,
    user_errors,
)

app = typer.Typer()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'2h', '90m', '300s' or '300' (seconds) as seconds."""
    match = _DURATION.match(text)
    if not match or not float(match[1]) > 0:
        raise OptimizerError(f"--deadline {text!r}: give a positive duration such as 2h, 90m, 300s or 300 (seconds).")
    return float(match[1]) * _UNIT_S[match[2]]


@app.command(epilog="Example: python cli.py fleet traces/sharegpt_batch_2k.csv --candidates examples/candidates.toml --deadline 60s --out fleet.toml")
def fleet(
    trace: TraceArg,
    candidates_path: Annotated[Path, typer.Option("--candidates", metavar="FILE", help="Candidate kinds with price per GPU-hour and availability (TOML; see examples/candidates.toml).")],
    deadline: Annotated[Optional[str], typer.Option("--deadline", metavar="DURATION", help="Finish by then: 2h, 90m, 300s. Chooses the cheapest fleet.")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", metavar="USD", callback=number_in(0, above=True), help="Spend at most this: chooses the fleet with the shortest makespan.")] = None,
    billing: Annotated[str, typer.Option("--billing", metavar="MODE", help="window (every replica rented for the whole deadline) or until-done (each billed until it finishes).")] = "window",
    out_path: Annotated[Optional[Path], typer.Option("--out", metavar="FILE", help="Write the chosen fleet as a cluster file (.toml) that --replicas reads.")] = None,
    plan_path: Annotated[Optional[Path], typer.Option("--plan", metavar="FILE", help="Write the chosen fleet's plan (CSV).")] = None,
    table_path: Annotated[list[Path], typer.Option("--table", metavar="FILE", help="Pareto mode: write the front as .csv or .md (repeatable).")] = [],
    chart_path: Annotated[Optional[Path], typer.Option("--chart", metavar="FILE", help="Pareto mode: write the chart (.png).")] = None,
    solver: Annotated[str, typer.Option("--solver", metavar="NAME", help="MIP backend of the sizing model: scip or cbc.")] = "scip",
    planner: Annotated[str, typer.Option("--planner", metavar="NAME", help="How the check plans each fleet: a backend or heuristic of `solvers`.")] = "cp-sat",
    plan_time_limit: Annotated[float, typer.Option("--plan-time-limit", metavar="SECONDS", callback=number_in(0, MAX_TIME_LIMIT_S, above=True), help="Seconds for each plan of the check.")] = 5.0,
    time_limit: Annotated[float, typer.Option("--time-limit", metavar="SECONDS", callback=number_in(0, MAX_TIME_LIMIT_S, above=True), help="Seconds for each sizing MIP.")] = 20.0,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    profiles: ProfilesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Choose how many replicas of each candidate kind to rent.

    With --deadline: the cheapest fleet that finishes by then, planned and simulated with the
    actual lengths (the deadline the model sees is tightened if simulation misses it), next
    to each kind alone. With --budget: the shortest makespan within it. With neither: the
    cost/makespan Pareto front over a range of deadlines (--table, --chart).
    """
    with user_errors():
        if deadline is not None and budget is not None:
            raise OptimizerError("Give --deadline or --budget, not both.")
        deadline_s = parse_duration(deadline) if deadline is not None else None
        check_options(billing, solver)
        pareto_mode = deadline_s is None and budget is None
        if not pareto_mode and (table_path or chart_path):
            raise OptimizerError("--table and --chart are for the Pareto front (no --deadline, no --budget).")
        if pareto_mode and (out_path or plan_path):
            raise OptimizerError("--out and --plan need a --deadline or a --budget (one fleet); the Pareto mode writes --table and --chart.")
        for path in table_path:
            if path.suffix.lower() not in (".csv", ".md"):
                raise OptimizerError(f"--table {path}: give a .csv or .md file.")
        if chart_path is not None and chart_path.suffix.lower() != ".png":
            raise OptimizerError(f"--chart {chart_path}: give a .png file.")
        for path in [*table_path, *(p for p in (out_path, plan_path, chart_path) if p is not None)]:
            check_output(path)
        candidates = load_candidates(candidates_path, model=model)
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        requests = loaded.requests
        options = dict(billing=billing, solver=solver, planner=planner, plan_time_limit_s=plan_time_limit, time_limit_s=time_limit,
                       seed=seed, profiles=read_profiles(profiles))
        if pareto_mode:
            front = pareto.pareto_front(requests, candidates, **options)
            with all_or_nothing():
                for path in table_path:
                    pareto.write_table(front, path)
                if chart_path is not None:
                    pareto.write_chart(front, chart_path, f"{Path(loaded.path).name}: cost against makespan ({billing} billing)")
            if not quiet:
                _print_front(loaded, front, table_path, chart_path)
            return
        if budget is not None:
            checked = choose_within_budget(requests, candidates, budget, **options)
            choice = None
        else:
            choice = choose_fleet(requests, candidates, deadline_s, **options)
            checked = choice.chosen
        header = [f"Fleet chosen by `fleet` for {loaded.path} ({loaded.num_requests:,} requests), "
                  + (f"deadline {deadline_s:,.1f} s" if budget is None else f"budget {budget:,.2f} USD") + f", {billing} billing.",
                  f"Candidates and prices: {candidates_path}. Simulated makespan {checked.simulated_makespan_s:,.1f} s, "
                  f"cost {checked.cost_usd:,.4f} USD."]
        with all_or_nothing():
            if out_path is not None:
                write_fleet(out_path, candidates, checked.counts, header)
            if plan_path is not None:
                write_plan(checked.plan, plan_path)
    if quiet:
        return
    out.print(f"{loaded.path}: {loaded.num_requests:,} requests; {len(candidates)} candidate kinds from {candidates_path}; {billing} billing")
    if choice is None:
        out.print(f"Fastest within {budget:,.2f} USD: {describe(candidates, checked.counts)} — target {checked.deadline_s:,.1f} s, "
                  f"simulated makespan {checked.simulated_makespan_s:,.1f} s, cost {checked.cost_usd:,.4f} USD"
                  + ("" if checked.cost_usd <= budget else " (over budget after the simulation check tightened the target)"))
    else:
        _print_choice(choice, candidates, deadline_s)
    _print_kinds(checked, candidates)
    for path in (out_path, plan_path):
        if path is not None:
            out.print(f"Wrote {path}")


def _print_choice(choice, candidates, deadline_s: float) -> None:
    chosen = choice.chosen
    out.print(f"Deadline {deadline_s:,.1f} s: {describe(candidates, chosen.counts)}, cost {chosen.cost_usd:,.4f} USD "
              f"(LP lower bound {choice.lower_bound_usd:,.4f} USD, {chosen.cost_usd / choice.lower_bound_usd - 1:+.2%})")
    for note in choice.notes:
        out.print(f"Note: {note}")
    best = choice.best_single
    if best is not None:
        out.print(f"Best single kind: {candidates[best].label} x{int(choice.single[best].counts.sum())} at "
                  f"{choice.single[best].cost_usd:,.4f} USD; mixing saves {choice.saving:.1%}")
    else:
        out.print("No single kind meets the deadline on its own.")
    table = Table("fleet", "replicas", *(Column(h, justify="right") for h in ("cost USD", "/ LP bound", "est. makespan s", "sim. makespan s")), "met", "rounds")
    for row in side_by_side(choice, candidates).itertuples(index=False):
        if isinstance(row.cost_usd, float) and not math.isnan(row.cost_usd):
            table.add_row(row.fleet, row.replicas, f"{row.cost_usd:,.4f}", f"{row.over_lp_bound:.3f}", f"{row.estimated_makespan_s:,.1f}",
                          f"{row.simulated_makespan_s:,.1f}", "yes" if row.met else "NO", str(int(row.rounds)))
        else:
            table.add_row(row.fleet, row.replicas, "", "", "", "", "", "")
    out.print(table)


def _print_kinds(checked, candidates) -> None:
    table = Table("kind", *(Column(h, justify="right") for h in ("replicas", "USD/GPU-h", "GPU-hours", "utilization")))
    for row in per_kind(checked, candidates).itertuples(index=False):
        table.add_row(row.kind, str(row.replicas), f"{row.price_per_gpu_hour:g}", f"{row.gpu_hours:,.4f}", f"{row.utilization:.1%}")
    out.print(table)


def _print_front(loaded, front, table_path, chart_path) -> None:
    out.print(f"{loaded.path}: {loaded.num_requests:,} requests; cost/makespan front over {len(front)} deadlines")
    table = Table(*(Column(h, justify="right") for h in ("deadline s",)), "fleet",
                  *(Column(h, justify="right") for h in ("cost USD", "sim. makespan s")), "met", "front")
    for row in front.itertuples(index=False):
        table.add_row(f"{row.deadline_s:,.1f}", row.fleet, f"{row.cost_usd:,.4f}", f"{row.simulated_makespan_s:,.1f}",
                      "yes" if row.met else "NO", "*" if row.on_front else "")
    out.print(table)
    for path in [*table_path, *([chart_path] if chart_path else [])]:
        out.print(f"Wrote {path}")
