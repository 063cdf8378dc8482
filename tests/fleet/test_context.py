"""Tests of requests longer than the model's context window, and of prompts beyond a profile's range."""

from __future__ import annotations

import pytest
from conftest import make_requests
from typer.testing import CliRunner

from cli import app
from optimizer import OptimizerError, parse_replicas
from optimizer.fleet.context import fit_context, out_of_range
from optimizer.fleet.sources import profile_for

# llama2-70b is trained on 4,096 tokens, but the measured deployment of its default profile
# ran 8,192-token prompts: that is its window here.
CLUSTER = parse_replicas("h100-tp4:1")


def _requests():
    # r1 and r3 need 8,200 and 9,000 tokens of context; r0 and r2 fit.
    return make_requests([100, 8100, 8000, 8990], [10, 100, 96, 10])


def test_too_long_requests_are_an_error_naming_the_first_the_count_and_the_window():
    """Tests the default: one error with the first offender, how many and the window."""
    with pytest.raises(OptimizerError, match=r"2 requests need more context than the model holds \(first 'r1': 8,100 prompt \+ 100 output tokens; llama2-70b holds 8,192\)"):
        fit_context(_requests(), CLUSTER)


def test_drop_leaves_them_out_and_lists_their_ids():
    """Tests that dropping keeps the others in order and names every dropped id."""
    fitted = fit_context(_requests(), CLUSTER, "drop")
    assert fitted.requests["request_id"].tolist() == ["r0", "r2"]
    assert fitted.notes == ("Dropped 2 requests longer than the context window: r1, r3.",)


def test_truncate_cuts_prompts_to_fit_the_window():
    """Tests truncation by hand: r1 keeps 8,192 - 100 = 8,092 prompt tokens, r3 8,182; the others are untouched."""
    fitted = fit_context(_requests(), CLUSTER, "truncate")
    assert fitted.requests["prompt_tokens"].tolist() == [100, 8092, 8000, 8182]
    assert (fitted.requests["prompt_tokens"] + fitted.requests["output_tokens"] <= 8192).all()
    assert fitted.notes == ("Truncated 2 requests to the context window: 816 prompt tokens cut (oldest first).",)


def test_the_window_of_a_model_without_measurements_is_its_trained_context():
    """Tests that Llama-3.1-8B (kernel tables) holds its 131,072 tokens and no more."""
    requests = make_requests([131_000, 1000], [100, 10])
    with pytest.raises(OptimizerError, match="1 request needs more context than the model holds .*holds 131,072"):
        fit_context(requests, parse_replicas("llama-3.1-8b@h100-tp1:1"))


def test_prompts_beyond_the_fitted_range_are_flagged():
    """Tests the flag: Splitwise's measurements go to 8,192-token prompts; a 16,384-token prompt is 2x beyond."""
    requests = make_requests([100, 16384], [10, 10])
    notes = out_of_range(requests, {"h100": profile_for(CLUSTER.replicas[0])})
    assert notes == ["1 prompt longer than the 8,192 tokens h100's profile was fitted on (up to 16,384, 2.0x): their prefill times are extrapolated."]


def test_cli_refuses_too_long_requests_and_writes_nothing(tmp_path):
    """Tests the command line: exit 1, one line naming the file, nothing written; with --context drop it plans the rest."""
    trace = tmp_path / "t.csv"
    _requests().drop(columns=["predicted_output_tokens", "model", "priority"]).to_csv(trace, index=False)
    out = tmp_path / "plan.csv"
    result = CliRunner().invoke(app, ["solve", str(trace), "--replicas", "h100-tp4:1", "--solver", "lpt", "--out", str(out)])
    assert result.exit_code == 1 and "need more context" in result.output and str(trace) in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["solve", str(trace), "--replicas", "h100-tp4:1", "--solver", "lpt", "--out", str(out), "--context", "drop"])
    assert result.exit_code == 0, result.output
    assert "Dropped 2 requests" in result.output and out.exists()
