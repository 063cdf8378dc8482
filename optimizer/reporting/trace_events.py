"""A simulation as a Chrome/Perfetto trace-event file (chrome://tracing, ui.perfetto.dev).

The JSON object format of the Trace Event Format: ``{"traceEvents": [...]}`` with times
in microseconds. Each replica is one process (one track group, named after the replica,
sorted in cluster order); each request is a complete event (``"ph": "X"``) from its
start to its finish, with two nested slices, ``prefill`` (start to first token) and
``decode`` (first token to finish). A replica runs many requests at once, and slices on
one thread must nest, so each request goes on a lane: the lowest-numbered thread of its
replica that is free at its start (the Gantt charts' stacking, `report.stack_rows`),
which uses as many lanes as the replica's peak concurrency. Times are whole microseconds, rounded
from the per-request CSV's seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.common.files import atomic_output


def _us(seconds: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(seconds, dtype=float) * 1e6).astype(np.int64)


def trace_events(requests: pd.DataFrame, replicas: list[str]) -> dict:
    """The trace-event document of a simulation's per-request table (`Simulation.requests`)."""
    # The Gantt charts' stacking, imported here: the report module loads matplotlib.
    from optimizer.reporting.report import stack_rows

    unknown = sorted(set(requests["replica"].astype(str)) - set(replicas))
    if unknown:
        raise OptimizerError(f"The simulation names replica {unknown[0]!r}, which the cluster does not have.")
    events: list[dict] = []
    for pid, replica in enumerate(replicas, start=1):
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": replica}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        mine = requests[requests["replica"].astype(str) == replica]
        start, first, finish = _us(mine["start_s"]), _us(mine["first_token_s"]), _us(mine["finish_s"])
        lanes = stack_rows(start, finish)
        for lane in range(int(lanes.max()) + 1 if len(lanes) else 0):
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": lane, "args": {"name": f"lane {lane}"}})
        ids = mine["request_id"].astype(str).tolist()
        arrival = mine["arrival_s"].to_numpy(dtype=float)
        extra = [c for c in ("preemptions", "restarts") if c in mine]
        extras = {c: mine[c].to_numpy() for c in extra}
        for i in np.lexsort((lanes, start)):
            tid, args = int(lanes[i]), {"arrival_s": float(arrival[i]), **{c: int(extras[c][i]) for c in extra}}
            events.append({"ph": "X", "name": ids[i], "cat": "request", "pid": pid, "tid": tid,
                           "ts": int(start[i]), "dur": int(finish[i] - start[i]), "args": args})
            events.append({"ph": "X", "name": "prefill", "cat": "phase", "pid": pid, "tid": tid,
                           "ts": int(start[i]), "dur": int(first[i] - start[i])})
            events.append({"ph": "X", "name": "decode", "cat": "phase", "pid": pid, "tid": tid,
                           "ts": int(first[i]), "dur": int(finish[i] - first[i])})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"source": "fleet-optimizer simulate"}}


def write_trace_events(requests: pd.DataFrame, replicas: list[str], path: str | Path) -> None:
    """Write the trace-event file atomically (compact JSON: files reach tens of megabytes)."""
    document = trace_events(requests, replicas)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
