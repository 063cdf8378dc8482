"""Tests of `trace from-results`: a run's output joined to its batch file, nothing dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from optimizer import load_trace
from optimizer.common.errors import TraceError
from optimizer.traces.results import read_results
from tests.traces.test_batch import chat, write_lines

ROOT = Path(__file__).parent.parent.parent
runner = CliRunner()


def ok(custom_id: str, prompt: int, completion: int) -> dict:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {"id": "x", "custom_id": custom_id, "response": {"status_code": 200, "body": {"usage": usage}}, "error": None}


@pytest.fixture
def batch(tmp_path) -> Path:
    return write_lines(tmp_path / "batch.jsonl", [chat("a", max_tokens=100), chat("b", max_tokens=100), chat("c", n=3, max_tokens=40), chat("d", max_tokens=77)])


def test_errored_and_missing_requests_are_listed_and_kept_with_unknown_output(tmp_path, batch):
    """Tests a run where 'b' errored and 'd' has no result, over two output files: 'a' gets
    the runner's counts, the n = 3 line's 10 completion tokens are split 4/3/3, and 'b' and
    'd' stay in the trace (output unknown, max_tokens as prediction) and are listed."""
    first = write_lines(tmp_path / "r0.jsonl", [ok("a", 120, 55), {"custom_id": "b", "response": None, "error": {"code": "x", "message": "context too long"}}])
    second = write_lines(tmp_path / "r1.jsonl", [ok("c", 30, 10)])
    joined = read_results([first, second], batch)
    requests = joined.trace.requests.set_index("request_id")
    assert requests.loc["a", "prompt_tokens"] == 120 and requests.loc["a", "output_tokens"] == 55
    assert requests.loc[["c#0", "c#1", "c#2"], "output_tokens"].tolist() == [4, 3, 3]
    assert requests.loc[["b", "d"], "output_tokens"].isna().all()
    assert requests.loc[["b", "d"], "predicted_output_tokens"].tolist() == [100, 77]
    assert requests.loc[["a", "c#0"], "predicted_output_tokens"].isna().all()  # plans use the actual length
    failed = joined.failed.set_index("custom_id")
    assert failed.loc["b", "status"] == "error" and failed.loc["b", "reason"] == "context too long"
    assert failed.loc["b", "result"] == f"{first}:2"
    assert failed.loc["d", "status"] == "missing" and failed.loc["d", "line"] == 4
    assert len(requests) == 6 and joined.num_completed == 4


def test_a_non_200_status_is_an_error_with_its_message(tmp_path, batch):
    """Tests that a response with status 400 counts as an error, its message kept."""
    bad = {"custom_id": "a", "response": {"status_code": 400, "body": {"error": {"message": "bad model"}}}, "error": None}
    joined = read_results([write_lines(tmp_path / "r.jsonl", [bad])], batch)
    assert joined.failed.set_index("custom_id").loc["a", "reason"] == "status 400: bad model"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "r.jsonl:2: is not valid JSON"),
        (json.dumps(ok("zzz", 1, 1)), "r.jsonl:2: custom_id: 'zzz' is not a request of the batch file"),
        (json.dumps(ok("a", 1, 1)), "r.jsonl:2: custom_id: 'a' already has a result"),
        (json.dumps(ok("b", -1, 1)), "r.jsonl:2: response.body.usage.prompt_tokens: -1 is not a token count"),
        (json.dumps({"id": "x"}), "r.jsonl:2: custom_id: has no custom_id"),
    ],
)
def test_bad_result_lines_name_the_file_and_line(tmp_path, batch, line, message):
    """Tests that a bad output line is one error naming the results file and line."""
    path = write_lines(tmp_path / "r.jsonl", [ok("a", 1, 1), line])
    with pytest.raises(TraceError) as caught:
        read_results([path], batch)
    assert message in str(caught.value)


def test_the_bundled_results_become_a_history_for_predict(tmp_path):
    """Tests the walk-through: the bundled results give a native trace with every request's
    actual lengths, which `predict --history` fits on and `solve --predictor` plans with."""
    history = tmp_path / "history.csv"
    result = runner.invoke(app, ["trace", "from-results", str(ROOT / "traces" / "batch" / "out" / "gsm8k.jsonl"),
                                 "--requests", str(ROOT / "traces" / "batch" / "gsm8k.jsonl"), "--out", str(history)])
    assert result.exit_code == 0, result.stderr
    assert "300 with actual lengths" in result.stdout
    trace = load_trace(history)
    assert trace.format == "native" and trace.requests["output_tokens"].notna().all()
    predicted = tmp_path / "predicted.csv"
    result = runner.invoke(app, ["predict", str(ROOT / "traces" / "batch" / "gsm8k.jsonl"), "--history", str(history), "--out", str(predicted)])
    assert result.exit_code == 0, result.stderr
    assert (load_trace(predicted).requests["predicted_output_tokens"] < 512).all()


def test_from_results_lists_failures_and_writes_nothing_on_a_bad_line(tmp_path, batch):
    """Tests the command: failed requests printed one per line; a bad line writes no trace."""
    out = tmp_path / "t.csv"
    result = runner.invoke(app, ["trace", "from-results", str(write_lines(tmp_path / "r.jsonl", [ok("a", 5, 5)])), "--requests", str(batch), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "missing  b (line 2): no output file has a result for it" in result.stdout
    out.unlink()
    result = runner.invoke(app, ["trace", "from-results", str(write_lines(tmp_path / "r.jsonl", ["{"])), "--requests", str(batch), "--out", str(out)])
    assert result.exit_code == 1 and "r.jsonl:1: is not valid JSON" in result.stderr and not out.exists()
