"""Tests of plans: the CSV form, spreadsheet safety, and the independent validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.common.errors import OptimizerError
from optimizer import (
    PlanError,
    load_trace,
    parse_replicas,
    plan_violations,
    read_plan,
    solve,
    validate_plan,
    write_plan,
)

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def native():
    return load_trace(DATA / "native.csv", model="llama2-70b").requests


@pytest.fixture
def cluster():
    return parse_replicas("h100-tp4:2,a100-tp2:1")


def _plan(rows):
    return pd.DataFrame(rows, columns=["request_id", "replica", "order", "planned_start_s", "planned_end_s"])


def test_plan_csv_round_trips_byte_for_byte(tmp_path, native, cluster):
    """Tests that write, read, write gives identical bytes, formula-like ids included."""
    plan = solve(native, cluster).plan
    plan["planned_start_s"] = np.arange(len(plan)) * 0.1234567
    plan["planned_end_s"] = plan["planned_start_s"] + 1.5
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_plan(plan, first)
    write_plan(read_plan(first), second)
    assert first.read_bytes() == second.read_bytes()
    assert read_plan(first)["request_id"].tolist() == plan["request_id"].tolist()


def test_formula_cells_are_neutralised(tmp_path):
    """Tests that text cells starting with = + - @ (or a quote) are prefixed so spreadsheets show text."""
    plan = _plan([("=1+1", "r", 0, np.nan, np.nan), ("+x", "r", 1, np.nan, np.nan), ("-2", "r", 2, np.nan, np.nan),
                  ("@SUM(A1)", "r", 3, np.nan, np.nan), ("'q", "r", 4, np.nan, np.nan), ("ok", "r", 5, np.nan, np.nan)])
    path = tmp_path / "p.csv"
    write_plan(plan, path)
    cells = [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    assert cells == ["'=1+1", "'+x", "'-2", "'@SUM(A1)", "''q", "ok"]
    assert read_plan(path)["request_id"].tolist() == ["=1+1", "+x", "-2", "@SUM(A1)", "'q", "ok"]


def test_valid_plan_passes(native, cluster):
    """Tests that the validator accepts a plan that keeps every rule."""
    assert plan_violations(solve(native, cluster).plan, native, cluster) == []


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: pd.concat([p, p.iloc[[0]]], ignore_index=True), "is planned more than once"),
        (lambda p: p.iloc[1:].reset_index(drop=True), "1 requests of the trace are not planned"),
        (lambda p: p.assign(request_id=p["request_id"].where(p.index != 0, "ghost")), "request 'ghost' is not in the trace"),
        (lambda p: p.assign(replica=p["replica"].where(p.index != 0, "tpu-9")), "replica 'tpu-9' is not in the cluster"),
        (lambda p: p.assign(order=p["order"].where(p.index != 0, 7)), "are not 0..0, each once"),
    ],
)
def test_validator_reports_each_broken_rule(native, edit, message):
    """Tests that the validator names each kind of broken rule."""
    cluster = parse_replicas("h100-tp4:2")
    plan = edit(solve(native, cluster).plan)
    problems = plan_violations(plan, native, cluster)
    assert any(message in str(p) for p in problems), problems
    with pytest.raises(PlanError):
        validate_plan(plan, native, cluster)


def test_validator_checks_models_and_times():
    """Tests that a request on a replica of another model, or planned before it arrives, is caught."""
    requests = load_trace(DATA / "native.csv").requests  # asks for llama2-70b and bloom-176b
    cluster = parse_replicas("llama2-70b@h100-tp4:1,bloom-176b@h100-tp8:1")
    plan = solve(requests, cluster).plan
    assert plan_violations(plan, requests, cluster) == []
    swapped = plan.assign(replica=plan["replica"].map({"h100-tp4-0": "h100-tp8-0", "h100-tp8-0": "h100-tp4-0"}))
    assert any("needs model 'bloom-176b' but replica 'h100-tp4-0' serves 'llama2-70b'" in str(p) for p in plan_violations(swapped, requests, cluster))
    timed = plan.assign(planned_start_s=0.0, planned_end_s=0.1)
    assert any("before the request arrives" in str(p) for p in plan_violations(timed, requests, cluster))


def test_read_plan_errors_name_file_line_and_field(tmp_path):
    """Tests that a malformed plan file is reported with its line and column."""
    path = tmp_path / "p.csv"
    path.write_text("request_id,replica,order\na,r,0\nb,r,first\n")
    with pytest.raises(PlanError, match=r"p\.csv:3: order: 'first' is not an integer"):
        read_plan(path)
    path.write_text("request_id,order\na,0\n")
    with pytest.raises(PlanError, match=r"p\.csv:1: replica: missing column"):
        read_plan(path)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch, native, cluster):
    """Tests that a write that fails half-way (disk full) is one clear error and leaves no file,
    not even a temporary one."""
    plan = solve(native, cluster).plan

    def half_write(self, path, **kwargs):
        Path(path).write_text("request_id,rep")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_write)
    with pytest.raises(OptimizerError, match="plan.csv: writing failed"):
        write_plan(plan, tmp_path / "plan.csv")
    assert list(tmp_path.iterdir()) == []
