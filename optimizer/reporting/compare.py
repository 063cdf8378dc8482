"""Side-by-side comparison of planners and dispatch policies on one trace and fleet.

Every row is one simulation (`optimizer.serving.simulator`) of the same requests, on the same
cluster, seed and deviations; only the way requests reach replicas (the policy) and the
batching inside each replica differ:

    round-robin        each arrival to the next live replica
    least-outstanding  each arrival to the replica with the fewest unfinished requests
    least-work         each arrival to the replica with the least estimated work left
    lpt                the LPT plan (`optimizer.planning.heuristics.lpt`) followed blindly
    mip                the solver's plan (`optimizer.planning.solve`) followed blindly
    repair             the solver's plan, repaired online (`optimizer.serving.repairer.Repair`)
    cache-affinity     SGLang's cache-aware router (`optimizer.serving.affinity`); in the
                       default set when the trace declares shared prefixes

Plans and dispatchers see the planning lengths (predictions where the trace has them);
the engines run the actual lengths. The lower bound every makespan is divided by is the
hindsight bound (`optimizer.planning.bounds.trace_bounds` on the actual lengths, on the whole
fleet), so predictions never flatter a policy:

    makespan_over_bound = M / LB_hindsight
    utilization, work_utilization: U and W of `optimizer.serving.metrics` (busy time, and
                          estimated work at the best batch size, over m M)
    idle_tail_s         = mean over replicas of (M - last finish of the replica)
    planning_s          = wall seconds spent making the plan the row follows (0 online)
    estimated_makespan_s = the plan's own estimate of its makespan (rows that follow a plan)
    slo_attainment      = share of requests with targets that met them; _achievable: of
                          those that can meet them at all (`optimizer.serving.slo`)

On a trace whose requests arrive over time the table leads with SLO attainment and the
latency percentiles, then makespan / bound: under light load every policy ends at the last
arrival plus one request, and under overload the makespan measures how fast the backlog
drains while every target is lost. Plans there optimise latency by default
(`optimizer.planning.solve`, objective "auto").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.common.files import atomic_output
from optimizer.fleet.cluster import Cluster
from optimizer.fleet.sources import profile_for
from optimizer.planning.backends import Progress
from optimizer.planning.bounds import Bounds, trace_bounds
from optimizer.planning.solve import solve
from optimizer.serving.batching import POLICIES
from optimizer.serving.deviation import Deviations
from optimizer.serving.metrics import summary
from optimizer.serving.predictor import LengthBelief
from optimizer.serving.results import Simulation
from optimizer.serving.slo import achievable as achievable_targets
from optimizer.serving.simulator import simulate

#: The policies a comparison runs by default, in table order.
POLICY_NAMES = ("round-robin", "least-outstanding", "least-work", "lpt", "mip", "repair")
#: Every policy a comparison can run: the default ones, and the prefix-cache router.
ALL_POLICY_NAMES = (*POLICY_NAMES, "cache-affinity")
#: How each policy dispatches, and which plan (if any) it follows.
_DISPATCH = {
    "round-robin": ("round-robin", None),
    "least-outstanding": ("least-outstanding", None),
    "least-work": ("least-work", None),
    "lpt": ("plan", "lpt"),
    "mip": ("plan", "mip"),
    "repair": ("repair", "mip"),
    "cache-affinity": ("cache-affinity", None),
}
COLUMNS = (
    "policy", "batching", "makespan_s", "lower_bound_s", "makespan_over_bound", "utilization", "work_utilization", "idle_tail_s",
    "ttft_p50_s", "ttft_p99_s", "e2e_p50_s", "e2e_p99_s", "slo_attainment", "slo_attainment_achievable", "planning_s",
    "preemptions", "moved_requests", "restarted_requests", "estimated_makespan_s",
)

#: Called with (what is running, simulated seconds so far) while a comparison runs.
CompareProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class Comparison:
    """The table (one row per policy and batching, `COLUMNS`), each row's simulation and
    the plan it followed (keyed "policy/batching"; online rows have no plan), and the
    hindsight bounds."""

    table: pd.DataFrame
    simulations: dict[str, Simulation]
    plans: dict[str, pd.DataFrame]
    bounds: Bounds
    #: Requests that cannot meet their targets even alone on the fastest replica.
    unachievable: int = 0
    #: True when requests arrive over time (the table then leads with latency).
    timed: bool = False


def parse_names(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated list of names, each one of `known`, in the given order, once each."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise OptimizerError(f"No {what} given; choose from: {', '.join(known)}.")
    for name in names:
        if name not in known:
            raise OptimizerError(f"Unknown {what} {name!r}; choose from: {', '.join(known)}.")
    return list(dict.fromkeys(names))


def compare(
    requests: pd.DataFrame,
    cluster: Cluster,
    *,
    policies: list[str] | tuple[str, ...] = POLICY_NAMES,
    batching: list[str] | tuple[str, ...] = ("sarathi",),
    solver: str = "cp-sat",
    time_limit_s: float = 10.0,
    seed: int = 0,
    deviations: Deviations | None = None,
    belief: LengthBelief | None = None,
    profiles: dict | None = None,
    policy_options: dict[str, dict[str, float]] | None = None,
    progress: CompareProgress | None = None,
    solve_progress: Progress | None = None,
    objective: str = "auto",
    deterministic: bool = False,
) -> Comparison:
    """Simulate every (policy, batching) pair on `requests` and tabulate the results.

    Args:
        requests: the trace table; actual `output_tokens`, and `predicted_output_tokens`
            where plans and dispatchers should see predictions.
        solver, time_limit_s: how the "mip" and "repair" rows plan (`optimizer.planning.solve`).
        policy_options: named options per batching policy, e.g. {"hybrid": {"lagrange": 2}}.
        progress: called with (what runs, simulated seconds) as the runs go (0 as each starts).
        solve_progress: passed to `optimizer.planning.solve` while the plans are made.
        objective, deterministic: how the "mip" and "repair" rows plan (`optimizer.planning.solve`).
    """
    for name in policies:
        if name not in _DISPATCH:
            raise OptimizerError(f"Unknown policy {name!r}; choose from: {', '.join(ALL_POLICY_NAMES)}.")
    for name in batching:
        if name not in POLICIES:
            raise OptimizerError(f"Unknown batching policy {name!r}; choose from: {', '.join(POLICIES)}.")
    deviations = deviations or Deviations()
    deviations.check(cluster)
    bounds, hindsight = trace_bounds(requests, cluster, profiles=profiles)
    feasible = achievable_targets(requests, hindsight, [profile_for(r, profiles) for r in cluster.first_of_each_kind])
    plans: dict[str, pd.DataFrame] = {}
    planning_s: dict[str, float] = {}
    estimated: dict[str, float] = {}
    for source in dict.fromkeys(_DISPATCH[name][1] for name in policies if _DISPATCH[name][1]):
        method = solver if source == "mip" else "lpt"
        if progress:
            progress(f"planning ({method})", 0.0)
        started = time.perf_counter()
        result = solve(requests, cluster, solver=method, time_limit_s=time_limit_s, seed=seed, profiles=profiles,
                       progress=solve_progress, objective=objective if source == "mip" else "makespan", deterministic=deterministic)
        planning_s[source] = time.perf_counter() - started
        plans[source] = result.plan
        estimated[source] = result.objective
    rows, simulations, followed = [], {}, {}
    for name in policies:
        dispatch, source = _DISPATCH[name]
        for policy in batching:
            label = f"{name}/{policy}"
            simulation = simulate(
                requests, cluster, dispatch=dispatch, policy=policy, plan=plans.get(source), seed=seed,
                profiles=profiles, policy_options=(policy_options or {}).get(policy), deviations=deviations,
                belief=belief, progress=(lambda now_s, label=label: progress(label, now_s)) if progress else None,
            )
            simulations[label] = simulation
            if source:
                followed[label] = plans[source]
            row = summary_row(name, policy, summary(simulation, requests, hindsight, feasible), bounds.best_s, planning_s.get(source, 0.0))
            rows.append({**row, "estimated_makespan_s": estimated.get(source, math.nan)})
    timed = not bool((requests["arrival_s"] == requests["arrival_s"].iloc[0]).all())
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table.attrs["timed"] = timed
    has_target = np.zeros(len(requests), dtype=bool)
    for column in ("ttft_target_s", "tbt_target_s", "e2e_target_s"):
        if column in requests:
            has_target |= requests[column].notna().to_numpy()
    return Comparison(table, simulations, followed, bounds, int((has_target & ~feasible).sum()), timed)


def summary_row(policy: str, batching: str, figures: dict, bound_s: float, planning_s: float) -> dict[str, object]:
    """One table row from a simulation's summary (`optimizer.serving.metrics.summary`)."""
    makespan = figures["makespan_s"]
    return {
        "policy": policy,
        "batching": batching,
        "makespan_s": makespan,
        "lower_bound_s": bound_s,
        "makespan_over_bound": makespan / bound_s if bound_s > 0 else math.nan,
        "utilization": figures["utilization"],
        "work_utilization": figures.get("work_utilization", math.nan),
        "idle_tail_s": float(np.mean(list(figures["idle_tail_s"].values()))),
        "ttft_p50_s": figures["ttft_s"]["p50"],
        "ttft_p99_s": figures["ttft_s"]["p99"],
        "e2e_p50_s": figures["e2e_s"]["p50"],
        "e2e_p99_s": figures["e2e_s"]["p99"],
        "slo_attainment": figures.get("slo_attainment", math.nan),
        "slo_attainment_achievable": figures.get("slo_attainment_achievable", math.nan),
        "planning_s": planning_s,
        "preemptions": figures["preemptions"],
        "moved_requests": figures["moved_requests"],
        "restarted_requests": figures["restarted_requests"],
    }


#: How each column is shown in Markdown and on the terminal: header and number format.
DISPLAY = {
    "policy": ("policy", "{}"),
    "batching": ("batching", "{}"),
    "makespan_s": ("makespan s", "{:,.1f}"),
    "makespan_over_bound": ("/ bound", "{:.3f}"),
    "utilization": ("util", "{:.1%}"),
    "work_utilization": ("work util", "{:.1%}"),
    "idle_tail_s": ("idle tail s", "{:,.1f}"),
    "ttft_p50_s": ("TTFT p50 s", "{:,.2f}"),
    "ttft_p99_s": ("TTFT p99 s", "{:,.2f}"),
    "e2e_p50_s": ("E2E p50 s", "{:,.1f}"),
    "e2e_p99_s": ("E2E p99 s", "{:,.1f}"),
    "slo_attainment": ("SLO met", "{:.1%}"),
    "slo_attainment_achievable": ("SLO met (achievable)", "{:.1%}"),
    "planning_s": ("plan s", "{:,.2f}"),
}
#: Column order on a trace with arrivals: latency targets and percentiles first.
TIMED_ORDER = ("policy", "batching", "slo_attainment", "slo_attainment_achievable", "ttft_p50_s", "ttft_p99_s", "e2e_p50_s",
               "e2e_p99_s", "makespan_s", "makespan_over_bound", "utilization", "work_utilization", "idle_tail_s", "planning_s")


def display_rows(table: pd.DataFrame, timed: bool | None = None) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the columns worth reading (SLO only when any row has
    one), latency first when requests arrive over time (`timed`, default: the table's own)."""
    timed = bool(table.attrs.get("timed", False)) if timed is None else timed
    order = TIMED_ORDER if timed else tuple(DISPLAY)
    columns = [c for c in order if c in table and (not c.startswith("slo_") or table[c].notna().any()) and (c != "batching" or table[c].astype(bool).any())]
    cells = [[("-" if isinstance(v, float) and math.isnan(v) else DISPLAY[c][1].format(v)) for c, v in zip(columns, row)]
             for row in table[columns].itertuples(index=False)]
    return [DISPLAY[c][0] for c in columns], cells


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown (text left, numbers right)."""
    headers, cells = display_rows(table)
    align = ["---" if h in ("policy", "batching") else "---:" for h in headers]
    lines = ["| " + " | ".join(line) + " |" for line in (headers, align, *cells)]
    return "\n".join(lines) + "\n"


def write_comparison(table: pd.DataFrame, path) -> None:
    """CSV (every column, full precision) or Markdown (`.md`: the display columns)."""
    with atomic_output(path) as tmp:
        if str(path).lower().endswith(".md"):
            tmp.write_text(to_markdown(table))
        else:
            table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")
