"""The cost / makespan Pareto front of fleets over a range of deadlines, as a table and a chart.

Deadlines run geometrically from the shortest one any fleet within the availability meets in
the model (`optimizer.planning.sizing.fastest_within_budget` with no budget) to `span` times
it. Each deadline's cheapest fleet is checked as it would run
(`optimizer.reporting.fleet_choice.check_fleet`: planned, simulated, tightened on a miss). A
point is on the front when no other point is at most as costly and at most as slow
(simulated), and better in one of the two.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.common.files import atomic_output
from optimizer.reporting import tables
from optimizer.planning.candidates import Candidate
from optimizer.planning.sizing import Unreachable, fastest_within_budget
from optimizer.reporting.fleet_choice import check_fleet, describe

COLUMNS = ("deadline_s", "fleet", "replicas", "cost_usd", "lp_bound_usd", "estimated_makespan_s", "simulated_makespan_s", "met", "on_front")


def pareto_front(
    requests: pd.DataFrame,
    candidates: list[Candidate],
    *,
    billing: str = "window",
    num_points: int = 7,
    span: float = 8.0,
    solver: str = "scip",
    planner: str = "cp-sat",
    plan_time_limit_s: float = 5.0,
    time_limit_s: float = 20.0,
    seed: int = 0,
    profiles=None,
) -> pd.DataFrame:
    """One row per deadline (`COLUMNS`), in deadline order."""
    shortest = fastest_within_budget(requests, candidates, billing=billing, solver=solver, time_limit_s=time_limit_s, seed=seed,
                                     profiles=profiles).deadline_s
    rows = []
    for deadline in shortest * np.geomspace(1.0, span, num_points):
        deadline = float(deadline)
        try:
            checked = check_fleet(requests, candidates, deadline, billing=billing, solver=solver, planner=planner,
                                  plan_time_limit_s=plan_time_limit_s, time_limit_s=time_limit_s, seed=seed, profiles=profiles)
        except Unreachable:
            continue
        rows.append({
            "deadline_s": deadline,
            "fleet": describe(candidates, checked.counts),
            "replicas": int(checked.counts.sum()),
            "cost_usd": checked.cost_usd,
            "lp_bound_usd": checked.sizing.lower_bound_usd if not checked.tightened else np.nan,
            "estimated_makespan_s": checked.sizing.estimated_makespan_s,
            "simulated_makespan_s": checked.simulated_makespan_s,
            "met": checked.met,
        })
    table = pd.DataFrame(rows, columns=list(COLUMNS[:-1]))
    cost, makespan = table["cost_usd"].to_numpy(), table["simulated_makespan_s"].to_numpy()
    dominated = [bool(np.any((cost <= c) & (makespan <= m) & ((cost < c) | (makespan < m)))) for c, m in zip(cost, makespan)]
    table["on_front"] = ~np.array(dominated, dtype=bool)
    return table


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| deadline s | fleet | cost USD | LP bound USD | est. makespan s | sim. makespan s | met | on front |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in table.itertuples(index=False):
        bound = "-" if np.isnan(row.lp_bound_usd) else f"{row.lp_bound_usd:,.4f}"
        lines.append(f"| {row.deadline_s:,.1f} | {row.fleet} | {row.cost_usd:,.4f} | {bound} | {row.estimated_makespan_s:,.1f} | "
                     f"{row.simulated_makespan_s:,.1f} | {'yes' if row.met else 'no'} | {'yes' if row.on_front else ''} |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, path) -> None:
    """CSV (full precision) or Markdown (`.md`)."""
    tables.write_table(table, path, to_markdown)


def write_chart(table: pd.DataFrame, path, title: str) -> None:
    """Cost against simulated makespan, the front as a staircase, each point labelled with its fleet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    front = table[table["on_front"]].sort_values("simulated_makespan_s")
    axes.step(front["simulated_makespan_s"], front["cost_usd"], where="post", color="tab:blue", label="Pareto front")
    axes.scatter(table["simulated_makespan_s"], table["cost_usd"], c=np.where(table["on_front"], "tab:blue", "tab:gray"), zorder=3)
    for row in table.itertuples(index=False):
        axes.annotate(row.fleet.replace(" + ", "\n"), (row.simulated_makespan_s, row.cost_usd), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    axes.set_xlabel("simulated makespan (s)")
    axes.set_ylabel("cost (USD)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)
