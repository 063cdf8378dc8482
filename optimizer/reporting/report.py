"""Report of simulations: PNG charts (matplotlib) and one self-contained HTML page.

From each simulation's per-request table (replica, arrival, start, first token, finish):

- Gantt chart, one lane per replica. Each request is a bar from its start to its finish,
  stacked into as many rows as the replica ran requests at once (the prefill part, start to
  first token, darker). When bars would be thinner than `MIN_BAR_PX` pixels on average,
  the lane shows the replica's load instead: the number of running requests over time,
  filled, scaled to the lane. Idle tails (last finish to makespan) are hatched; a plan's
  planned end of each replica is a black tick.
- Activity: running-batch size b_r(t) = #{j on r : start_j <= t < finish_j}, averaged
  over `BINS` time bins, and utilization u_r(bin) = busy time of r in the bin / bin
  length, where busy time is the union of r's [start, finish] intervals
  (`optimizer.serving.simulator.busy_intervals`).
- Latency CDFs of time to first token and end-to-end latency, one line per simulation.
- The summary table (`optimizer.reporting.compare`) and the hindsight lower bounds.

The HTML embeds every image as a data URI, so the one file can be mailed or archived; the
PNGs are written next to it as well. Output is deterministic (no timestamps in images).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from optimizer.common.errors import OptimizerError  # noqa: E402
from optimizer.common.files import all_or_nothing, atomic_output, check_folder  # noqa: E402
from optimizer.planning.bounds import Bounds  # noqa: E402
from optimizer.reporting.compare import display_rows  # noqa: E402
from optimizer.serving.results import busy_intervals  # noqa: E402

#: Time bins of the activity charts.
BINS = 200
#: Gantt bars thinner than this (mean bar width in pixels) switch a chart to load lanes.
MIN_BAR_PX = 2.0
#: At most this many stacked request rows per lane before switching to load lanes.
MAX_ROWS_PER_LANE = 48
DPI = 100
WIDTH_IN = 12.0
PNG_METADATA = {"Software": None}  # no version string: the same bytes across patch releases


@dataclass
class Figure:
    """One rendered chart: file name, caption, PNG bytes."""

    name: str
    caption: str
    png: bytes = field(repr=False)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    plt.close(fig)
    return buffer.getvalue()


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "run"


def stack_rows(start_s: np.ndarray, finish_s: np.ndarray) -> np.ndarray:
    """Row of each interval in a stacking where no two overlapping intervals share a row
    (interval partitioning by start time: lowest free row; as many rows as the deepest overlap)."""
    import heapq

    rows = np.empty(len(start_s), dtype=np.int64)
    free: list[int] = []
    busy: list[tuple[float, int]] = []  # (finish, row)
    used = 0
    for j in np.argsort(start_s, kind="stable"):
        while busy and busy[0][0] <= start_s[j]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            row = heapq.heappop(free)
        else:
            row, used = used, used + 1
        rows[j] = row
        heapq.heappush(busy, (finish_s[j], row))
    return rows


def step_average(begins: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean over each bin [edges[i], edges[i+1]) of the number of intervals covering t."""
    times = np.concatenate([begins, ends])
    steps = np.concatenate([np.ones(len(begins)), -np.ones(len(ends))])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(steps[order])
    if not len(times):
        return np.zeros(len(edges) - 1)
    # Integral of the count from 0 to each event time, then to each edge by interpolation
    # (the count is constant between events, so the integral is piecewise linear).
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(times))])
    at_edges = np.interp(edges, times, area, left=0.0, right=area[-1])
    return np.diff(at_edges) / np.diff(edges)


def activity(table: pd.DataFrame, replicas: list[str], edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean running requests, utilization), each of shape (replicas, bins)."""
    batch = np.zeros((len(replicas), len(edges) - 1))
    busy = np.zeros_like(batch)
    for r, name in enumerate(replicas):
        mine = table[table["replica"] == name]
        start, finish = mine["start_s"].to_numpy(float), mine["finish_s"].to_numpy(float)
        batch[r] = step_average(start, finish, edges)
        begins, ends = busy_intervals(start, finish)
        busy[r] = step_average(begins, ends, edges)
    return batch, busy


def gantt_figure(table: pd.DataFrame, replicas: list[str], title: str, plan: pd.DataFrame | None = None) -> Figure:
    """Requests per replica over time (bars, or load lanes when bars get too thin)."""
    makespan = float(table["finish_s"].max())
    start, first, finish = (table[c].to_numpy(float) for c in ("start_s", "first_token_s", "finish_s"))
    lane_of = {name: r for r, name in enumerate(replicas)}
    lane = table["replica"].map(lane_of).to_numpy()
    # Pixel width of the average bar, and the stacking depth each lane needs.
    plot_px = WIDTH_IN * DPI * 0.8
    mean_bar_px = float(np.mean(finish - start)) / makespan * plot_px if makespan > 0 else 0.0
    depth = np.ones(len(replicas), dtype=np.int64)
    rows = np.zeros(len(table), dtype=np.int64)
    bars = mean_bar_px >= MIN_BAR_PX
    if bars:  # stacking is only worth its time if the bars can be drawn
        for r in range(len(replicas)):
            mine = np.flatnonzero(lane == r)
            if len(mine):
                rows[mine] = stack_rows(start[mine], finish[mine])
                depth[r] = rows[mine].max() + 1
        bars = depth.max() <= MAX_ROWS_PER_LANE
    height = 1.2 + 0.55 * len(replicas) * (1.6 if bars and depth.max() > 8 else 1.0)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height))
    cmap = plt.get_cmap("tab10")
    for r in range(len(replicas)):
        mine = np.flatnonzero(lane == r)
        color = cmap(r % 10)
        if bars:
            h = 0.8 / depth[r]
            bottom = r - 0.4 + rows[mine] * h
            ax.barh(bottom, finish[mine] - start[mine], left=start[mine], height=h * 0.9, align="edge", color=color, alpha=0.55, linewidth=0)
            ax.barh(bottom, first[mine] - start[mine], left=start[mine], height=h * 0.9, align="edge", color=color, alpha=1.0, linewidth=0)
        elif len(mine):
            edges = np.linspace(0.0, makespan, 4 * BINS + 1)
            load = step_average(start[mine], finish[mine], edges)
            peak = load.max() or 1.0
            # The y axis runs downwards (first replica on top): fill up from the lane's bottom.
            ax.fill_between(edges[:-1], r + 0.4, r + 0.4 - 0.8 * load / peak, step="post", color=color, alpha=0.8, linewidth=0)
            ax.text(makespan, r - 0.42, f"peak {peak:.0f} ", ha="right", va="top", fontsize=7)
        last = float(finish[mine].max()) if len(mine) else 0.0
        if last < makespan:
            ax.barh(r - 0.4, makespan - last, left=last, height=0.8, align="edge", color="none", edgecolor="0.6", hatch="///", linewidth=0)
    right = makespan
    if plan is not None and "planned_end_s" in plan and plan["planned_end_s"].notna().any():
        planned = plan.groupby("replica")["planned_end_s"].max()
        for name, end in planned.items():
            if name in lane_of and math.isfinite(end):
                ax.plot([end, end], [lane_of[name] - 0.45, lane_of[name] + 0.45], color="black", linewidth=2)
                right = max(right, end)
    ax.set_yticks(range(len(replicas)), replicas, fontsize=8)
    ax.set_ylim(len(replicas) - 0.5, -0.5)
    ax.set_xlim(0, right * 1.02 if right > 0 else 1)
    ax.set_xlabel("time (s)")
    what = "each bar a request (dark: prefill, to the first token)" if bars else "running requests over time, scaled to each replica's peak"
    ax.set_title(f"{title}: {what}; hatched: idle tail" + ("; black tick: planned end" if plan is not None else ""), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    caption = f"Gantt chart, {title}: {len(table):,} requests on {len(replicas)} replicas, makespan {makespan:,.1f} s." + (
        "" if bars else " Bars would be too thin to read, so each lane shows the replica's load.")
    return Figure(f"gantt-{_slug(title)}.png", caption, _png(fig))


def activity_figure(table: pd.DataFrame, replicas: list[str], title: str) -> Figure:
    """Running-batch size and utilization per replica over time."""
    makespan = float(table["finish_s"].max())
    edges = np.linspace(0.0, makespan if makespan > 0 else 1.0, BINS + 1)
    batch, busy = activity(table, replicas, edges)
    mids = (edges[:-1] + edges[1:]) / 2
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH_IN, 2.2 + 0.3 * len(replicas) + 2.6), sharex=True,
                                      gridspec_kw={"height_ratios": [2.6, 0.6 + 0.3 * len(replicas)]})
    cmap = plt.get_cmap("tab10")
    for r, name in enumerate(replicas):
        top.plot(mids, batch[r], color=cmap(r % 10), linewidth=1.2, label=name)
    top.set_ylabel("running requests")
    top.legend(fontsize=7, ncol=min(len(replicas), 4), loc="upper right")
    top.grid(alpha=0.3)
    top.set_title(f"{title}: running-batch size (mean per bin) and utilization per replica", fontsize=9)
    image = bottom.imshow(busy, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                          extent=(edges[0], edges[-1], len(replicas) - 0.5, -0.5))
    bottom.set_yticks(range(len(replicas)), replicas, fontsize=8)
    bottom.set_xlabel("time (s)")
    fig.colorbar(image, ax=bottom, label="utilization", fraction=0.03, pad=0.01)
    fig.tight_layout()
    fleet = busy.mean()
    caption = f"Activity, {title}: mean fleet utilization {fleet:.1%} over the makespan ({BINS} bins of {edges[1]:.2f} s)."
    return Figure(f"activity-{_slug(title)}.png", caption, _png(fig))


def latency_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """CDFs of time to first token and end-to-end latency, one line per simulation."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.2))
    cmap = plt.get_cmap("tab10")
    styles = ("-", "--", ":", "-.")  # policies with equal results stay visible as overlapping styles
    for i, (label, table) in enumerate(tables.items()):
        for ax, values in zip(axes, (table["first_token_s"] - table["arrival_s"], table["finish_s"] - table["arrival_s"])):
            x = np.sort(values.to_numpy(float))
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=cmap(i % 10), linestyle=styles[(i // 10 + i) % 4],
                    label=label, linewidth=1.4)
    for ax, name in zip(axes, ("time to first token (s)", "end-to-end latency (s)")):
        ax.set_xlabel(name)
        ax.set_ylabel("share of requests")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.01)
    axes[0].set_xscale("log")  # TTFT spans milliseconds (idle replicas) to minutes (queues)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Latency CDFs", fontsize=10)
    fig.tight_layout()
    return Figure("latency-cdf.png", "Latency CDFs: time to first token (log scale) and end-to-end latency.", _png(fig))


def render(
    *,
    title: str,
    tables: dict[str, pd.DataFrame],
    replicas: list[str],
    summary: pd.DataFrame,
    bounds: Bounds,
    plans: dict[str, pd.DataFrame | None] | None = None,
    notes: list[str] | tuple[str, ...] = (),
) -> tuple[str, list[Figure]]:
    """The HTML page and its figures. `tables`: per-request table of each simulation, by
    label; `plans`: the plan a label followed (its planned ends go on its Gantt chart)."""
    if not tables:
        raise OptimizerError("A report needs at least one simulation.")
    figures = [latency_figure(tables)]
    for label, table in tables.items():
        figures.append(gantt_figure(table, replicas, label, (plans or {}).get(label)))
        figures.append(activity_figure(table, replicas, label))
    return _html(title, summary, bounds, figures, notes), figures


def check_report_dir(out_dir: str | Path) -> Path:
    """The folder a report can be written to (itself or its parent exists), else an error."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OptimizerError(f"{out_dir}: exists and is not a folder.")
    check_folder(out_dir)
    return out_dir


def write_report(out_dir: str | Path, page: str, figures: list[Figure]) -> Path:
    """Write index.html and the PNGs into `out_dir` (created if needed), all or none.

    PNGs that an earlier report in the same folder wrote (named in its index.html) and
    this one does not are removed, so the folder never mixes charts of two runs.
    """
    out_dir = check_report_dir(out_dir)
    out_dir.mkdir(exist_ok=True)
    index = out_dir / "index.html"
    stale = set(_figure_names(index)) - {figure.name for figure in figures}
    with all_or_nothing():
        for figure in figures:
            with atomic_output(out_dir / figure.name) as tmp:
                tmp.write_bytes(figure.png)
        with atomic_output(index) as tmp:
            tmp.write_text(page, encoding="utf-8")
    for name in sorted(stale):
        (out_dir / name).unlink(missing_ok=True)
    return index


def _figure_names(index: Path) -> list[str]:
    """The PNG names an earlier report's index.html lists (its figures' ids), if any."""
    try:
        text = index.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [name for name in re.findall(r'<figure id="([^"/\\]+\.png)">', text) if not name.startswith(".")]


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1240px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #e4e4e4; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: 0.85em; color: #555; }
.notes { font-size: 0.9em; color: #444; }
"""


def _table_html(headers: list[str], cells: list[list[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{html.escape(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(title: str, summary: pd.DataFrame, bounds: Bounds, figures: list[Figure], notes) -> str:
    headers, cells = display_rows(summary)
    bound_rows = [[name, f"{value:,.2f}", "binds" if name == bounds.binding else ""]
                  for name, value in (("work", bounds.work_s), ("chain", bounds.chain_s), ("pcmax", bounds.pcmax_s))]
    images = "".join(
        f'<figure id="{html.escape(f.name)}"><img src="data:image/png;base64,{base64.b64encode(f.png).decode()}" '
        f'alt="{html.escape(f.caption)}"><figcaption>{html.escape(f.caption)} ({html.escape(f.name)})</figcaption></figure>'
        for f in figures
    )
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + (f"<ul class=notes>{note_items}</ul>" if note_items else "")
        + "<h2>Summary</h2>"
        + _table_html(headers, cells, numeric_from=2 if "batching" in headers else 1)
        + "<p class=notes>/ bound: makespan over the hindsight lower bound (actual output lengths), below.</p>"
        + "<h2>Lower bounds on the makespan</h2>"
        + _table_html(["bound", "seconds", ""], bound_rows, numeric_from=1)
        + "<h2>Charts</h2>" + images
        + "</body></html>\n"
    )
