"""Tests of prefix information in traces: hash_ids, prefix groups, declarations, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from optimizer.common.errors import TraceError
from optimizer.traces.load import load_trace
from optimizer.traces.prefixes import prefix_chains, prefix_units
from optimizer.traces.write import write_trace

ROOT = Path(__file__).resolve().parents[2]


def mooncake(tmp_path, records) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def native(tmp_path, lines) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("request_id,arrival_s,prompt_tokens,output_tokens,prefix_group,prefix_tokens\n" + "".join(line + "\n" for line in lines))
    return path


def test_mooncake_blocks_become_shared_units():
    """Tests that two Mooncake requests with the same first 12 block ids share 12 x 512 tokens
    (384 blocks of 16), and that a partial last block is never a shared unit."""
    requests = load_trace(ROOT / "tests" / "data" / "mooncake.jsonl").requests
    units = prefix_units(prefix_chains(requests), 16)
    first, second = units.chains[0], units.chains[1]
    shared = [u for u in first if u in second]
    assert sum(end - start for _, start, end in shared) == 12 * 32
    assert first[-1][2] == 6955 // 512 * 32  # 13 full blocks of the 6,955-token prompt


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [1, 2, 3]}, "has 3 block ids but a prompt of 1,000 tokens is 2 blocks"),
        ({"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [1, "x"]}, "is not a list of integer block ids"),
        ({"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": 7}, "is not a list of integer block ids"),
    ],
)
def test_bad_hash_ids_name_the_file_line_and_field(tmp_path, record, message):
    """Tests that hash_ids of the wrong count or type are one error at the file, line 2 and field."""
    path = mooncake(tmp_path, [{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [0]}, record])
    with pytest.raises(TraceError) as error:
        load_trace(path)
    assert str(error.value).startswith(f"{path}:2: hash_ids: ") and message in str(error.value)


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("b,0,100,5,g,150", "prefix_tokens", "shares 150 tokens but the prompt has only 100"),
        ("b,0,300,5,g,120", "prefix_tokens", "says group 'g' shares 120 tokens, but an earlier request says 100"),
        ("b,0,300,5,g/h,120", "prefix_tokens", "has 1 numbers but the group 'g/h' has 2 levels"),
        ("b,0,300,5,,120", "prefix_tokens", "prefix_group is empty"),
        ("b,0,300,5,g,x", "prefix_tokens", "is not a list of whole numbers"),
    ],
)
def test_contradicting_prefix_declarations_are_one_located_error(tmp_path, line, field, message):
    """Tests that prefix groups contradicting the prompt or each other name file, line and field."""
    path = native(tmp_path, ["a,0,200,5,g,100", line])
    with pytest.raises(TraceError) as error:
        load_trace(path)
    assert str(error.value).startswith(f"{path}:3: {field}: ") and message in str(error.value)


def test_declared_structure_round_trips_through_the_native_format(tmp_path):
    """Tests --shared-prefix-tokens with --samples-per-prompt: every request under a 20-token
    level, 3 samples of each prompt sharing it whole; written (CSV and Parquet) and read back
    unchanged."""
    trace = load_trace(ROOT / "traces" / "gsm8k_test.jsonl", shared_prefix_tokens=20, samples_per_prompt=3)
    requests = trace.requests
    assert len(requests) == 3 * 1319
    assert requests["request_id"].iloc[:3].tolist() == ["gsm8k-0#s0", "gsm8k-0#s1", "gsm8k-0#s2"]
    assert requests["prefix_group"].iloc[0] == "shared/gsm8k-0"
    assert requests["prefix_tokens"].iloc[0] == (20, int(requests["prompt_tokens"].iloc[0]))
    for name in ("out.csv", "out.parquet"):
        write_trace(requests, tmp_path / name)
        again = load_trace(tmp_path / name).requests
        assert again["prefix_group"].tolist() == requests["prefix_group"].tolist()
        assert again["prefix_tokens"].tolist() == requests["prefix_tokens"].tolist()


def test_cli_reports_a_contradicting_declaration_in_one_line(tmp_path):
    """Tests the command line: a shared prefix longer than a prompt is one line, exit code 1,
    nothing written."""
    out = tmp_path / "plan.csv"
    result = CliRunner().invoke(app, ["solve", str(ROOT / "traces" / "gsm8k_test.jsonl"), "--shared-prefix-tokens", "40", "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "shorter than the declared shared prefix of 40 tokens" in result.output
    assert not out.exists()


def test_a_prefix_text_precedes_every_gsm8k_prompt_and_is_shared(tmp_path):
    """Tests --prefix-text on GSM8K: the text's estimated tokens (here 'Answer briefly.' =
    ceil(1.3 x 2) + 1 symbol = 4) are added to every prompt and shared with the BOS token
    (5 tokens); on a token-count trace it is one error suggesting --shared-prefix-tokens."""
    text = tmp_path / "shots.txt"
    text.write_text("Answer briefly.")
    plain = load_trace(ROOT / "traces" / "gsm8k_test.jsonl").requests
    trace = load_trace(ROOT / "traces" / "gsm8k_test.jsonl", prefix_text=text)
    assert (trace.requests["prompt_tokens"] - plain["prompt_tokens"]).unique().tolist() == [4]
    assert trace.requests["prefix_tokens"].iloc[0] == (5,)
    assert any("shared with the BOS token" in note for note in trace.notes)
    with pytest.raises(TraceError, match="--shared-prefix-tokens instead"):
        load_trace(ROOT / "tests" / "data" / "mooncake.jsonl", prefix_text=text)


def test_trace_stats_give_the_share_an_unbounded_cache_could_serve():
    """Tests the reusable share by hand on the Mooncake sample: requests 0 and 1 share their
    first 12 full 512-token blocks and nothing else is shared, so the unique prefill is the
    total, 21,739 prompt tokens, less one copy of 12 x 512; a trace without prefix
    information gets no such figure (its statistics are as before)."""
    from optimizer import trace_stats

    stats = trace_stats(load_trace(ROOT / "tests" / "data" / "mooncake.jsonl"))
    assert stats["prefixes"]["prompt_tokens"] == 21_739
    assert stats["prefixes"]["unique_prompt_tokens"] == 21_739 - 12 * 512
    assert "prefixes" not in trace_stats(load_trace(ROOT / "traces" / "sharegpt_batch_2k.csv"))
