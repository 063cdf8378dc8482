"""Tests of per-replica batch files: `solve --split-dir` round trip, manifest, models, atomicity."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cli import app
from optimizer import read_plan
from tests.traces.test_batch import chat, write_lines

ROOT = Path(__file__).parent.parent.parent
BATCH = ROOT / "traces" / "batch" / "gsm8k.jsonl"
runner = CliRunner()


def solve(trace: Path, tmp_path: Path, *extra: str):
    return runner.invoke(
        app, ["solve", str(trace), "--out", str(tmp_path / "plan.csv"), "--split-dir", str(tmp_path / "split"), "--solver", "lpt", "-q", *extra]
    )


def split_lines(folder: Path) -> Counter:
    return Counter(line for path in folder.glob("*.jsonl") for line in path.read_bytes().splitlines(keepends=True))


def test_split_files_hold_the_input_lines_exactly_once_in_plan_order(tmp_path):
    """Tests the round trip on the bundled example: the split files together are the input's
    lines byte for byte (each once), and each file lists its requests in the plan's order."""
    result = solve(BATCH, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert split_lines(tmp_path / "split") == Counter(BATCH.read_bytes().splitlines(keepends=True))
    plan = read_plan(tmp_path / "plan.csv")
    for replica, rows in plan.groupby("replica"):
        lines = (tmp_path / "split" / f"{replica}.jsonl").read_text().splitlines()
        assert [json.loads(line)["custom_id"] for line in lines] == rows.sort_values("order")["request_id"].tolist()


def test_the_manifest_counts_match_the_plan_and_give_a_runnable_command(tmp_path):
    """Tests that the manifest's lines and requests per replica are the plan's counts, its
    times the plan's, and its command runs that file with vLLM on the replica's TP."""
    assert solve(BATCH, tmp_path).exit_code == 0
    manifest = json.loads((tmp_path / "split" / "manifest.json").read_text())
    plan = read_plan(tmp_path / "plan.csv")
    counts = plan.groupby("replica").size()
    assert manifest["requests"] == manifest["lines"] == len(plan) == 300
    for entry in manifest["replicas"]:
        assert entry["requests"] == entry["lines"] == counts.get(entry["replica"], 0)
        mine = plan[plan["replica"] == entry["replica"]]
        assert entry["estimated_finish_s"] == round(mine["planned_end_s"].max(), 3)
        split = tmp_path / "split" / f"{entry['replica']}.jsonl"
        assert entry["command"] == (
            f"vllm run-batch -i {split} -o out/{entry['replica']}.jsonl --model llama2-70b --tensor-parallel-size 4"
        )


def test_lines_with_n_copies_stay_whole_and_models_go_to_their_replicas(tmp_path):
    """Tests a file with two models and n > 1: every file holds only lines of its replica's
    model, a line with n = 4 appears once (with its CRLF bytes), and the manifest's request
    counts add up to the expanded plan."""
    records = [chat(f"l{i}", "hello " * (i + 1), max_tokens=20 + i) for i in range(6)]
    records += [{**chat(f"b{i}", max_tokens=30), "body": {**chat("x")["body"], "model": "bloom-176b", "max_tokens": 30}} for i in range(3)]
    records.append(chat("many", n=4, max_tokens=50))
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"".join((json.dumps(r) + "\r\n").encode() for r in records))
    result = solve(path, tmp_path, "--replicas", "llama2-70b@h100-tp4:2,bloom-176b@h100-tp8:1")
    assert result.exit_code == 0, result.stderr
    assert split_lines(tmp_path / "split") == Counter(path.read_bytes().splitlines(keepends=True))
    manifest = json.loads((tmp_path / "split" / "manifest.json").read_text())
    for entry in manifest["replicas"]:
        lines = (tmp_path / "split" / f"{entry['replica']}.jsonl").read_text().splitlines()
        assert {json.loads(line)["body"]["model"] for line in lines} == {entry["model"]}
    assert sum(e["requests"] for e in manifest["replicas"]) == len(read_plan(tmp_path / "plan.csv")) == 13


def test_bad_input_writes_nothing_and_an_earlier_split_is_replaced_whole(tmp_path):
    """Tests atomicity: a bad line leaves no plan and no folder; a folder holding other files
    is refused before any work; a second run replaces an earlier split entirely."""
    bad = write_lines(tmp_path / "bad.jsonl", [chat("a"), "{oops"])
    result = solve(bad, tmp_path)
    assert result.exit_code == 1 and "bad.jsonl:2: is not valid JSON" in result.stderr
    assert not (tmp_path / "split").exists() and not (tmp_path / "plan.csv").exists()

    assert solve(BATCH, tmp_path).exit_code == 0
    (tmp_path / "split" / "stale.jsonl").write_text("old\n")
    assert solve(BATCH, tmp_path).exit_code == 0
    assert not (tmp_path / "split" / "stale.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    (tmp_path / "split" / "notes.txt").write_text("mine\n")
    result = solve(BATCH, tmp_path)
    assert result.exit_code == 1 and "notes.txt" in result.stderr
    assert (tmp_path / "split" / "notes.txt").read_text() == "mine\n"


def test_split_dir_is_refused_for_a_trace_that_is_not_a_batch_file(tmp_path):
    """Tests that --split-dir on a CSV trace is one line saying it cuts batch files."""
    result = solve(ROOT / "tests" / "data" / "native.csv", tmp_path)
    assert result.exit_code == 1 and "--split-dir cuts batch files" in result.stderr
    assert not (tmp_path / "split").exists()


def test_the_plan_written_with_a_split_is_the_plan_without_one(tmp_path):
    """Tests that asking for split files does not change the plan's bytes."""
    assert solve(BATCH, tmp_path).exit_code == 0
    other = tmp_path / "other.csv"
    assert runner.invoke(app, ["solve", str(BATCH), "--out", str(other), "--solver", "lpt", "-q"]).exit_code == 0
    pd.testing.assert_frame_equal(read_plan(other), read_plan(tmp_path / "plan.csv"))


def test_a_byte_order_mark_and_a_last_line_without_newline_are_cut_cleanly(tmp_path):
    """Tests that a file starting with a byte-order mark and ending without a newline gives
    split files of whole lines: the mark is not part of the first line, and the last line
    gets its newline (so files can be concatenated)."""
    lines = [json.dumps(chat(f"q{i}", max_tokens=10 + i)).encode() for i in range(5)]
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))
    assert solve(path, tmp_path).exit_code == 0
    assert split_lines(tmp_path / "split") == Counter(line + b"\n" for line in lines)


def test_length_error_on_a_batch_file_is_one_line_pointing_to_predictor(tmp_path):
    """Tests that --length-error (noise around actual lengths) on a batch file, which has none,
    is one line naming --predictor, and writes nothing."""
    result = solve(BATCH, tmp_path, "--length-error", "0.3")
    assert result.exit_code == 1 and "give --predictor HISTORY instead" in result.stderr
    assert not (tmp_path / "plan.csv").exists() and not (tmp_path / "split").exists()
