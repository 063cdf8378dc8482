"""Parameter sweeps: every combination of traces x fleets x dispatch x batching x deviations x
seeds, each cell one row of `optimizer.reporting.compare.compare`, run on Ray or serially.

A sweep spec is TOML; relative paths are read from the spec's folder::

    traces = ["../traces/sharegpt_batch_2k.csv"]
    fleets = ["llama-3.1-8b@h100-tp1:2,llama-3.1-8b@l40s-tp1:2", "fleet.toml"]
    dispatch = ["least-outstanding", "lpt", "mip"]   # compare's policies
    batching = ["sarathi", "vllm"]
    seeds = [0, 1]
    model = "llama-3.1-8b"        # optional: serve every request with this model
    solver = "cp-sat"             # optional: how mip and repair cells plan
    time_limit_s = 10             # optional
    max_requests = 500            # optional: the first N requests of each trace

    [[deviations]]                # optional; default one cell without deviations
    name = "exact"
    [[deviations]]
    name = "sigma 0.5, jitter 2 s"
    length_error = 0.5            # plans see actual x lognormal(0.5) lengths
    jitter_s = 2.0
    slow = ["h100-tp1-0@10:2"]    # as --slow
    fail = ["l40s-tp1-1@30"]      # as --fail

Cells are numbered in that nesting order (traces outermost, seeds innermost); the table
lists them in that order whatever order they finish in, and each cell depends only on its
parameters (seeded), so the table is the same bytes on any number of workers. A cell that
fails is a row with its parameters and the error; the others still run. Wall-clock columns
(compare's planning_s) are left out, as they would differ between runs.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import InputError, OptimizerError
from optimizer.common.files import atomic_output
from optimizer.reporting import tables
from optimizer.fleet.cluster import resolve_cluster
from optimizer.reporting.compare import COLUMNS as COMPARE_COLUMNS
from optimizer.reporting.compare import POLICY_NAMES, compare
from optimizer.serving.batching import POLICIES
from optimizer.serving.deviation import Deviations, parse_failure, parse_slowdown
from optimizer.serving.predictor import LengthBelief, noisy_oracle, with_predictions
from optimizer.traces.load import load_trace

_SPEC_KEYS = ("traces", "fleets", "dispatch", "batching", "deviations", "seeds", "model", "solver", "time_limit_s", "max_requests")
_DEVIATION_KEYS = ("name", "length_error", "jitter_s", "slow", "fail")
PARAMETERS = ("cell", "trace", "fleet", "dispatch", "batching", "deviation", "seed")
RESULTS = tuple(c for c in COMPARE_COLUMNS if c not in ("policy", "batching", "planning_s"))
COLUMNS = (*PARAMETERS, *RESULTS, "error")
INSTALL_RAY = "Ray is not installed; install it with: pip install 'fleet-optimizer[ray]' (or pip install ray)."


@dataclass(frozen=True)
class Deviation:
    name: str
    length_error: float | None = None
    jitter_s: float = 0.0
    slow: tuple[str, ...] = ()
    fail: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    number: int
    trace: str  # as written in the spec
    trace_path: str
    fleet: str
    fleet_spec: str  # resolved path or inline spec
    dispatch: str
    batching: str
    deviation: Deviation
    seed: int
    model: str | None
    solver: str
    time_limit_s: float
    max_requests: int | None


def _unknown(key: str, known: tuple[str, ...], where: str, path: Path) -> InputError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return InputError(f"unknown key {key!r}{where}; {hint}known: {', '.join(known)}.", path=path)


def _names(data: dict, key: str, path: Path, kind: type = str) -> list:
    values = data.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise InputError(f"{key} must be a non-empty list of {'text' if kind is str else 'whole numbers'}.", path=path)
    return values


def read_spec(path: str | Path) -> list[Cell]:
    """The cells of a sweep spec (module docstring), every name and file checked first.

    Raises:
        InputError: unreadable TOML, an unknown key (with a did-you-mean), a missing list,
            an unknown policy or batching, a fleet or trace that does not load.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the sweep spec ({exc.strerror}).", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc}).", path=path) from None
    for key in data:
        if key not in _SPEC_KEYS:
            raise _unknown(key, _SPEC_KEYS, "", path)
    folder = path.parent
    traces = _names(data, "traces", path)
    fleets = _names(data, "fleets", path)
    dispatch = _names(data, "dispatch", path)
    batching = _names(data, "batching", path)
    seeds = _names(data, "seeds", path, int) if "seeds" in data else [0]
    for name in dispatch:
        if name not in POLICY_NAMES:
            raise InputError(f"dispatch: unknown policy {name!r}; choose from: {', '.join(POLICY_NAMES)}.", path=path)
    for name in batching:
        if name not in POLICIES:
            raise InputError(f"batching: unknown policy {name!r}; choose from: {', '.join(POLICIES)}.", path=path)
    if any(s < 0 for s in seeds):
        raise InputError("seeds must be at least 0.", path=path)
    deviations = [_deviation(entry, number, path) for number, entry in enumerate(data.get("deviations", [{"name": "none"}]), start=1)]
    model = data.get("model")
    solver = data.get("solver", "cp-sat")
    time_limit_s = data.get("time_limit_s", 10.0)
    max_requests = data.get("max_requests")
    if model is not None and not isinstance(model, str):
        raise InputError("model must be text.", path=path)
    if not isinstance(time_limit_s, (int, float)) or isinstance(time_limit_s, bool) or not 0 < time_limit_s < math.inf:
        raise InputError(f"time_limit_s must be a number above 0, got {time_limit_s!r}.", path=path)
    if max_requests is not None and (not isinstance(max_requests, int) or isinstance(max_requests, bool) or max_requests < 1):
        raise InputError(f"max_requests must be a whole number of at least 1, got {max_requests!r}.", path=path)
    trace_paths = []
    for trace in traces:
        resolved = Path(trace) if Path(trace).is_absolute() else folder / trace
        if not resolved.is_file():
            raise InputError(f"traces: no such trace file {trace!r} (looked for {resolved}).", path=path)
        trace_paths.append(str(resolved))
    fleet_specs = []
    for fleet in fleets:
        local = folder / fleet
        spec = str(local) if fleet.endswith((".toml", ".json")) and not Path(fleet).is_absolute() else fleet
        try:
            cluster = resolve_cluster(spec)
            for deviation in deviations:
                Deviations(deviation.jitter_s, tuple(map(parse_slowdown, deviation.slow)), tuple(map(parse_failure, deviation.fail))).check(cluster)
        except OptimizerError as exc:
            raise InputError(f"fleets: {fleet!r}: {exc}", path=path) from None
        fleet_specs.append(spec)
    cells = []
    for number, ((trace, trace_path), (fleet, spec), policy, batch, deviation, seed) in enumerate(itertools.product(
            zip(traces, trace_paths), zip(fleets, fleet_specs), dispatch, batching, deviations, seeds)):
        cells.append(Cell(number, trace, trace_path, fleet, spec, policy, batch, deviation, int(seed), model, str(solver),
                          float(time_limit_s), max_requests))
    return cells


def _deviation(entry, number: int, path: Path) -> Deviation:
    if not isinstance(entry, dict):
        raise InputError(f"deviations entry {number} must be a table.", path=path)
    for key in entry:
        if key not in _DEVIATION_KEYS:
            raise _unknown(key, _DEVIATION_KEYS, f" in deviations entry {number}", path)
    try:
        slow, fail = tuple(entry.get("slow", ())), tuple(entry.get("fail", ()))
        for text in slow:
            parse_slowdown(text)
        for text in fail:
            parse_failure(text)
        sigma = entry.get("length_error")
        jitter = float(entry.get("jitter_s", 0.0))
        if sigma is not None and not 0 <= float(sigma) < math.inf:
            raise OptimizerError(f"length_error must be at least 0, got {sigma!r}.")
    except (OptimizerError, TypeError, ValueError) as exc:
        raise InputError(f"deviations entry {number}: {exc}", path=path) from None
    return Deviation(str(entry.get("name", f"deviation {number}")), None if sigma is None else float(sigma), jitter, slow, fail)


@functools.lru_cache(maxsize=8)
def _requests(trace_path: str, model: str | None, max_requests: int | None) -> pd.DataFrame:
    requests = load_trace(trace_path, model=model).requests
    return requests.iloc[:max_requests].reset_index(drop=True) if max_requests else requests


def run_cell(cell: Cell) -> dict[str, object]:
    """One row: the cell's parameters and its compare row, or its error."""
    row: dict[str, object] = {"cell": cell.number, "trace": cell.trace, "fleet": cell.fleet, "dispatch": cell.dispatch,
                              "batching": cell.batching, "deviation": cell.deviation.name, "seed": cell.seed}
    try:
        requests = _requests(cell.trace_path, cell.model, cell.max_requests)
        cluster = resolve_cluster(cell.fleet_spec)
        deviation = cell.deviation
        belief = LengthBelief.exact()
        if deviation.length_error is not None:
            predicted = noisy_oracle(requests["output_tokens"].to_numpy(dtype=float), deviation.length_error, cell.seed)
            requests, belief = with_predictions(requests, predicted), LengthBelief.lognormal(deviation.length_error)
        deviations = Deviations(deviation.jitter_s, tuple(map(parse_slowdown, deviation.slow)),
                                tuple(map(parse_failure, deviation.fail)), cell.seed)
        result = compare(requests, cluster, policies=[cell.dispatch], batching=[cell.batching], solver=cell.solver,
                         time_limit_s=cell.time_limit_s, seed=cell.seed, deviations=deviations, belief=belief)
        figures = result.table.iloc[0]
        row.update({c: figures[c] for c in RESULTS})
        row["error"] = ""
    except Exception as exc:  # reported in the cell's row; the other cells still run
        row.update({c: np.nan for c in RESULTS})
        row["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OptimizerError) else str(exc)
    return row


#: Called with (cells done, cells in all).
SweepProgress = Callable[[int, int], None]


def check_address(address: str) -> None:
    """A `ray://HOST:PORT` address must answer on its port (a quick, clear failure instead of
    Ray client's retries); 'auto' is checked by Ray itself."""
    if address == "auto":
        return
    if not address.startswith("ray://") or ":" not in address[6:]:
        raise OptimizerError(f"--address {address!r}: give auto or ray://HOST:PORT.")
    host, _, port = address[6:].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise OptimizerError(f"--address {address}: cannot reach a Ray cluster there ({exc}).") from None


def run_sweep(cells: list[Cell], *, workers: int = 0, address: str | None = None, progress: SweepProgress | None = None) -> pd.DataFrame:
    """Every cell's row, in cell order. `workers` = 0 and no `address`: serially in this
    process; otherwise on Ray (a local instance with `workers` CPUs, or the cluster at `address`).

    Raises:
        OptimizerError: Ray missing, or the address unreachable.
    """
    if workers == 0 and address is None:
        rows = []
        for done, cell in enumerate(cells, start=1):
            rows.append(run_cell(cell))
            if progress:
                progress(done, len(cells))
        return _table(rows)
    try:
        import ray
    except ImportError:
        raise OptimizerError(INSTALL_RAY) from None
    if address is not None:
        check_address(address)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise OptimizerError(f"--address {address}: cannot connect to Ray ({' '.join(str(exc).split())[:200]}).") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        pending = [remote.remote(cell) for cell in cells]
        rows: list[dict] = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows.extend(ray.get(done))
            if progress:
                progress(len(rows), len(cells))
    finally:
        if started_here:
            ray.shutdown()
    return _table(rows)


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(sorted(rows, key=lambda row: row["cell"]), columns=list(COLUMNS))


def to_markdown(table: pd.DataFrame) -> str:
    """The parameters, makespan, its ratio to the bound, utilization and any error."""
    lines = ["| cell | trace | fleet | dispatch | batching | deviation | seed | makespan s | / bound | util | E2E p99 s | error |",
             "| ---: | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    fmt = lambda value, spec: "-" if isinstance(value, float) and math.isnan(value) else format(value, spec)  # noqa: E731
    for row in table.itertuples(index=False):
        lines.append(f"| {row.cell} | {row.trace} | {row.fleet} | {row.dispatch} | {row.batching} | {row.deviation} | {row.seed} | "
                     f"{fmt(row.makespan_s, ',.1f')} | {fmt(row.makespan_over_bound, '.3f')} | {fmt(row.utilization, '.1%')} | "
                     f"{fmt(row.e2e_p99_s, ',.1f')} | {row.error} |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, path) -> None:
    """CSV (every column, 6 decimals) or Markdown (`.md`)."""
    tables.write_table(table, path, to_markdown)


def write_chart(table: pd.DataFrame, path, title: str) -> None:
    """Makespan over the lower bound of every cell, one column per dispatch/batching pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["error"] == ""]
    groups = list(dict.fromkeys(f"{d}\n{b}" for d, b in zip(ok["dispatch"], ok["batching"])))
    figure, axes = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 2), 4.5), dpi=110)
    labels = list(dict.fromkeys(f"{t} | {f} | {d}" for t, f, d in zip(ok["trace"], ok["fleet"], ok["deviation"])))
    colors = plt.get_cmap("tab10")
    for number, label in enumerate(labels):
        mine = ok[[f"{t} | {f} | {d}" == label for t, f, d in zip(ok["trace"], ok["fleet"], ok["deviation"])]]
        x = [groups.index(f"{d}\n{b}") + (number - (len(labels) - 1) / 2) * 0.6 / max(len(labels), 1)
             for d, b in zip(mine["dispatch"], mine["batching"])]
        axes.scatter(x, mine["makespan_over_bound"], color=colors(number % 10), s=18, label=label)
    axes.set_xticks(range(len(groups)), groups, fontsize=8)
    axes.set_ylabel("makespan / lower bound")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)
