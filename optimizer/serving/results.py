"""The results of a simulation: per-request times and per-replica counters, written and read as CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common import spreadsheet
from optimizer.common.errors import OptimizerError
from optimizer.common.files import atomic_output
from optimizer.fleet.cluster import Cluster


@dataclass(frozen=True)
class Simulation:
    """Per-request results and per-replica counters of one simulation."""

    requests: pd.DataFrame  # request_id, replica, arrival_s, start_s, first_token_s, finish_s, preemptions, restarts
    replicas: pd.DataFrame  # replica, busy_s, iterations, last_finish_s, peak_kv_tokens, kv_capacity_tokens, requests, failed
    policy: str
    dispatch: str
    #: Requests restarted on another replica after theirs failed, and the KV tokens of
    #: work they lost (prompt and output tokens recomputed).
    restarted_requests: int = 0
    redone_tokens: int = 0
    #: Requests the dispatcher moved between waiting queues after placing them.
    moved_requests: int = 0


def write_simulation(simulation: Simulation, path) -> None:
    """Per-request CSV of a simulation (text cells protected as in plan files)."""
    table = simulation.requests.copy()
    for column in ("request_id", "replica"):
        table[column] = spreadsheet.neutralize(table[column])
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")


SIMULATION_COLUMNS = ("request_id", "replica", "arrival_s", "start_s", "first_token_s", "finish_s")


def busy_intervals(start_s: np.ndarray, finish_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of the intervals [start, finish] as disjoint (begins, ends), in time order.

    A replica iterates without pause while it holds an unfinished request, so on one
    replica this union is its busy time. Not exactly for a request restarted after a
    failure: the file keeps its first start, on the replica that failed.
    """
    if len(start_s) == 0:  # a replica that served no request was never busy
        return np.empty(0), np.empty(0)
    order = np.argsort(start_s, kind="stable")
    start, finish = start_s[order], finish_s[order]
    reach = np.maximum.accumulate(finish)
    # A new interval begins where a start lies after everything before it has finished.
    new = np.ones(len(start), dtype=bool)
    new[1:] = start[1:] > reach[:-1]
    ends_at = np.r_[np.flatnonzero(new)[1:] - 1, len(start) - 1]
    return start[new], reach[ends_at]


def read_simulation(path, cluster: Cluster, *, requests: pd.DataFrame | None = None, policy: str = "",
                    dispatch: str = "") -> Simulation:
    """A per-request CSV written by `write_simulation`, as a `Simulation`.

    The per-replica counters are rebuilt from the requests: busy time is the union of
    their [start, finish] intervals (`busy_intervals`), iterations and failures are not
    in the file (0 and False). With `requests` (the trace it ran), every request of the
    trace must be in the file exactly once, and the rows come in the trace's order, as
    `optimizer.serving.metrics.summary` expects.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"request_id": str, "replica": str}, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise OptimizerError(f"{path}: no such file.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise OptimizerError(f"{path}: not a simulation CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    missing = [c for c in SIMULATION_COLUMNS if c not in table]
    if missing:
        raise OptimizerError(f"{path}: missing column(s) {', '.join(missing)}; expected the CSV of `simulate --out`.")
    for column in SIMULATION_COLUMNS[2:]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise OptimizerError(f"{path}: line {row + 2}, field {column}: {table[column].iloc[row]!r} is not a finite number.")
        table[column] = values.astype(float)
    for column in ("preemptions", "restarts"):
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(0).astype(np.int64) if column in table else 0
    for column in ("request_id", "replica"):
        table[column] = spreadsheet.restore(table[column])
    unknown = ~table["replica"].isin(cluster.names)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy()))
        raise OptimizerError(f"{path}: line {row + 2}, field replica: {table['replica'].iloc[row]!r} is not a replica of the cluster ({cluster.describe()}).")
    if requests is not None:
        table = _in_trace_order(table, requests, path)
    busy, last, count = [], [], []
    for name in cluster.names:
        mine = table[table["replica"] == name]
        begins, ends = busy_intervals(mine["start_s"].to_numpy(), mine["finish_s"].to_numpy())
        busy.append(float((ends - begins).sum()))
        last.append(float(mine["finish_s"].max()) if len(mine) else 0.0)
        count.append(len(mine))
    replicas = pd.DataFrame({
        "replica": cluster.names, "busy_s": busy, "iterations": 0, "last_finish_s": last, "peak_kv_tokens": 0,
        "kv_capacity_tokens": [r.kv_capacity_tokens for r in cluster.replicas], "requests": count, "failed": False,
    })
    return Simulation(table, replicas, policy or path.stem, dispatch, restarted_requests=int(table["restarts"].sum()))


def _in_trace_order(table: pd.DataFrame, requests: pd.DataFrame, path) -> pd.DataFrame:
    """The rows of a simulation file in the trace's order; every trace request there once."""
    duplicated = table["request_id"].duplicated()
    if duplicated.any():
        raise OptimizerError(f"{path}: line {int(np.argmax(duplicated.to_numpy())) + 2}: request {table['request_id'][duplicated].iloc[0]!r} appears twice.")
    indexed = table.set_index("request_id")
    ids = requests["request_id"].astype(str)
    missing = ~ids.isin(indexed.index)
    if missing.any():
        raise OptimizerError(f"{path}: request {ids[missing].iloc[0]!r} of the trace is missing ({int(missing.sum()):,} missing in all); was it simulated on this trace?")
    if len(indexed) != len(ids):
        extra = indexed.index[~indexed.index.isin(ids)][0]
        raise OptimizerError(f"{path}: request {extra!r} is not in the trace; was it simulated on this trace?")
    return indexed.loc[ids].reset_index()
