"""Tests of the Chrome/Perfetto trace-event export of a simulation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cli import app
from optimizer.reporting.trace_events import trace_events

ROOT = Path(__file__).parent.parent.parent
runner = CliRunner()


def test_simulate_writes_one_track_per_replica_with_slices_matching_the_csv(tmp_path):
    """Tests that `simulate --trace-events` writes JSON that loads, names one process per
    replica, and has one request slice per CSV row with the row's replica, start and
    finish (to the microsecond), prefill and decode nested inside it."""
    csv, events = tmp_path / "requests.csv", tmp_path / "trace.json"
    result = runner.invoke(app, ["simulate", str(ROOT / "traces" / "sharegpt_batch_2k.csv"), "--out", str(csv),
                                 "--trace-events", str(events), "--replicas", "h100-tp4:2,a100-tp4:1", "-q"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(events.read_text())
    names = {e["pid"]: e["args"]["name"] for e in document["traceEvents"] if e["name"] == "process_name"}
    assert sorted(names.values()) == ["a100-tp4-0", "h100-tp4-0", "h100-tp4-1"]
    slices = pd.DataFrame([e for e in document["traceEvents"] if e.get("cat") == "request"])
    table = pd.read_csv(csv, dtype={"request_id": str}).set_index("request_id")
    assert len(slices) == len(table) == 2000
    slices = slices.set_index("name").loc[table.index]
    assert (slices["pid"].map(names) == table["replica"]).all()
    assert np.abs(slices["ts"] / 1e6 - table["start_s"]).max() <= 1e-6
    assert np.abs((slices["ts"] + slices["dur"]) / 1e6 - table["finish_s"]).max() <= 2e-6
    phases = [e for e in document["traceEvents"] if e.get("cat") == "phase"]
    assert len(phases) == 2 * len(table)


def test_slices_on_one_lane_never_overlap():
    """Tests the lane assignment: requests of one replica overlapping in time go on
    different lanes, a lane is reused once free, and lanes never exceed peak concurrency."""
    requests = pd.DataFrame({
        "request_id": ["a", "b", "c", "d"], "replica": ["r0"] * 4, "arrival_s": [0.0] * 4,
        "start_s": [0.0, 0.5, 1.0, 2.0], "first_token_s": [0.1, 0.6, 1.1, 2.1], "finish_s": [1.0, 3.0, 2.5, 3.0],
    })
    events = [e for e in trace_events(requests, ["r0", "r1"])["traceEvents"] if e.get("cat") == "request"]
    lanes = {e["name"]: e["tid"] for e in events}
    assert lanes == {"a": 0, "b": 1, "c": 0, "d": 2}
    for lane in set(lanes.values()):
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["tid"] == lane)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
