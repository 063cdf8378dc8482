"""Tests of trace loading: every format, the bundled real traces, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer import TraceError, load_trace, trace_stats, write_trace

DATA = Path(__file__).parent.parent / "data"
TRACES = Path(__file__).parent.parent.parent / "traces"


@pytest.mark.parametrize(
    "name, fmt, num_requests, first",
    [
        ("azure_2023.csv", "azure", 5, (0.0, 374, 44)),
        ("azure_2024.csv", "azure", 4, (0.0, 1923, 186)),
        ("mooncake.jsonl", "mooncake", 4, (0.0, 6955, 52)),
        ("vidur.csv", "vidur", 4, (0.0, 2230, 134)),
        ("splitwise.csv", "splitwise", 5, (0.0, 1082, 146)),
        ("burstgpt.csv", "burstgpt", 3, (0.0, 472, 18)),
        ("lengths.csv", "lengths", 5, (0.0, 74, 918)),
        ("native.csv", "native", 4, (0.0, 812, 143)),
    ],
)
def test_every_format_loads(name, fmt, num_requests, first):
    """Tests that each format is detected from its columns and normalized to the common table."""
    trace = load_trace(DATA / name)
    assert trace.format == fmt
    assert trace.num_requests == num_requests
    row = trace.requests.iloc[0]
    assert (row["arrival_s"], row["prompt_tokens"], row["output_tokens"]) == first
    assert trace.requests["request_id"].is_unique
    assert (trace.requests["arrival_s"] >= 0).all()
    assert trace.requests["arrival_s"].min() == 0


def test_format_override_is_used():
    """Tests that --format forces a format, and that a wrong one names the missing column."""
    assert load_trace(DATA / "vidur.csv", format="lengths").format == "lengths"
    with pytest.raises(TraceError, match=r"vidur\.csv:1: TIMESTAMP: missing column for the azure format"):
        load_trace(DATA / "vidur.csv", format="azure")


@pytest.mark.parametrize(
    "name, num_requests, output_mean",
    [
        ("AzureLLMInferenceTrace_conv.csv", 19366, 211.1),
        ("AzureLLMInferenceTrace_code.csv", 8819, 27.9),
        ("sharegpt_8k_filtered_stats_llama2_tokenizer.csv", 30731, 438.7),
        ("sharegpt_batch_2k.csv", 2000, None),
    ],
)
def test_bundled_traces_load_with_their_documented_figures(name, num_requests, output_mean):
    """Tests that the bundled real traces load whole, with the figures their README states."""
    stats = trace_stats(load_trace(TRACES / name))
    assert stats["num_requests"] == num_requests
    assert stats["num_excluded"] == 0
    if output_mean is not None:
        assert stats["output_tokens"]["mean"] == output_mean


def test_azure_timestamps_keep_their_sub_microsecond_digits():
    """Tests that 7-digit fractional timestamps become exact relative seconds, with or without a zone."""
    conv = load_trace(DATA / "azure_2023.csv").requests["arrival_s"].to_numpy()
    # 2023-11-16 18:15:46.6805900 and 18:15:50.9951690
    assert conv[1] == pytest.approx(4.314579, abs=1e-9)
    zoned = load_trace(DATA / "azure_2024.csv").requests["arrival_s"].to_numpy()
    assert zoned[-1] == pytest.approx(2.0 - 0.009759 + 1e-7, abs=1e-9)


def test_mooncake_keeps_prefix_hash_ids_and_converts_milliseconds():
    """Tests that Mooncake arrivals are read in ms and hash_ids survive as tuples."""
    requests = load_trace(DATA / "mooncake.jsonl").requests
    assert requests["arrival_s"].tolist() == [0.0, 0.0, 3.052, 3.551]
    assert requests["hash_ids"].iloc[1] == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14)


def test_burstgpt_failures_are_reported_not_planned():
    """Tests that BurstGPT rows with zero response tokens are left out and listed with their lines."""
    trace = load_trace(DATA / "burstgpt.csv")
    assert trace.excluded["line"].tolist() == [3, 6]
    assert trace.requests["request_id"].tolist() == ["0", "2", "3"]
    assert trace.requests["model"].tolist() == ["ChatGPT", "GPT-4", "ChatGPT"]
    assert "Left out 2 rows, each a failed request (zero response tokens) (lines 3, 6)." in trace.notes


def test_splitwise_batch_rows_become_one_request_each():
    """Tests that a Splitwise row with batch_size 2 becomes two requests, and says so."""
    trace = load_trace(DATA / "splitwise.csv")
    assert trace.requests["request_id"].tolist() == ["0#0", "1#0", "2#0", "2#1", "3#0"]
    assert any("batch_size > 1" in note for note in trace.notes)


def test_length_only_tables_are_offline_or_seeded_poisson():
    """Tests that length-only tables are an offline batch, or Poisson arrivals reproducible by seed."""
    path = TRACES / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    assert load_trace(path).is_offline_batch
    first = load_trace(path, arrival_rate=5.0, seed=7).requests["arrival_s"]
    again = load_trace(path, arrival_rate=5.0, seed=7).requests["arrival_s"]
    other = load_trace(path, arrival_rate=5.0, seed=8).requests["arrival_s"]
    assert first.equals(again) and not first.equals(other)
    assert first.iloc[0] == 0 and first.is_monotonic_increasing
    # 30,731 arrivals at 5 req/s: the measured rate is within 2% of the asked one.
    assert len(first) / first.iloc[-1] == pytest.approx(5.0, rel=0.02)


def test_native_format_keeps_every_field():
    """Tests that the native format reads ids literally (even 'NA'), unknown outputs, targets and models."""
    requests = load_trace(DATA / "native.csv").requests
    assert requests["request_id"].tolist() == ["chat-1", "chat-2", "=cmd|calc", "NA"]
    assert requests["output_tokens"].isna().tolist() == [False, True, False, False]
    assert requests["predicted_output_tokens"].iloc[1] == 60
    assert requests["model"].tolist() == ["llama2-70b", "llama2-70b", "bloom-176b", ""]
    assert requests["priority"].tolist() == [0, 1, 0, 2]
    assert requests["ttft_target_s"].iloc[0] == 2.0 and np.isnan(requests["ttft_target_s"].iloc[1])
    assert requests["hash_ids"].tolist() == [(1, 2), (4,), (), ()]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_native_files_round_trip(tmp_path, suffix):
    """Tests that writing a loaded trace in the native format and reading it back loses nothing."""
    original = load_trace(DATA / "native.csv").requests
    path = tmp_path / f"trace{suffix}"
    write_trace(original, path)
    pd.testing.assert_frame_equal(load_trace(path).requests, original)
    if suffix == ".csv":
        assert "'=cmd|calc" in path.read_text()  # the formula is neutralised in the file


def test_model_option_replaces_every_model():
    """Tests that load_trace(model=...) serves every request with one model."""
    requests = load_trace(DATA / "burstgpt.csv", model="llama2-70b").requests
    assert set(requests["model"]) == {"llama2-70b"}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD_ROW = "2023-11-16 18:17:03.9799600,4808,10\n"


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("empty.csv", "", "empty.csv: the file is empty."),
        ("header.csv", AZURE_HEADER, "header.csv: has a header but no requests."),
        (
            "missing.csv",
            "TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.9799600,4808\n",
            "missing.csv:1: GeneratedTokens: missing column for the azure format",
        ),
        (
            "misnamed.csv",
            "TIMESTAMP,ContextTokens,GenratedTokens\n" + GOOD_ROW,
            "misnamed.csv:1: GeneratedTokens: missing column for the azure format (found 'GenratedTokens'; misspelt?)",
        ),
        (
            "nonnumeric.csv",
            AZURE_HEADER + GOOD_ROW + "2023-11-16 18:17:04.0319600,lots,8\n",
            "nonnumeric.csv:3: ContextTokens: 'lots' is not a number.",
        ),
        (
            "negative.csv",
            AZURE_HEADER + GOOD_ROW + GOOD_ROW + "2023-11-16 18:17:04.0319600,3180,-8\n",
            "negative.csv:4: GeneratedTokens: is negative; a token count here must be at least 1.",
        ),
        (
            "fraction.csv",
            AZURE_HEADER + "2023-11-16 18:17:04.0319600,3180.5,8\n",
            "fraction.csv:2: ContextTokens: 3180.5 is not a whole number of tokens.",
        ),
        (
            "emptycell.csv",
            AZURE_HEADER + GOOD_ROW + "2023-11-16 18:17:04.0319600,,8\n",
            "emptycell.csv:3: ContextTokens: is empty; a value is required.",
        ),
        (
            "badtime.csv",
            AZURE_HEADER + GOOD_ROW + "16/11/2023 6pm,3180,8\n",
            "badtime.csv:3: TIMESTAMP: '16/11/2023 6pm' is not a timestamp",
        ),
        (
            "duplicate.csv",
            "request_id,arrival_s,prompt_tokens\na,0,5\nb,1,5\na,2,5\n",
            "duplicate.csv:4: request_id: duplicate request id 'a' (first used on line 2).",
        ),
        (
            "gsm8k.jsonl",
            '{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\\n#### 4"}\n{"question": "Why?", "answer": " "}\n',
            "gsm8k.jsonl:2: answer: is empty; the token estimate needs the text.",
        ),
        (
            "unknown.csv",
            "when,prompt,reply\n1,2,3\n",
            "unknown.csv:1: unknown trace format: the columns (when, prompt, reply) match none of",
        ),
        (
            "ragged.csv",
            AZURE_HEADER + GOOD_ROW + "2023-11-16 18:17:04.0319600,3180,8,99\n",
            "ragged.csv:3: has 4 fields but the header has 3.",
        ),
        (
            "blank.csv",
            "request_id,arrival_s,prompt_tokens\na,0,5\n,,\nb,1,5\n",
            "blank.csv:3: is blank; every line after the header must be a request.",
        ),
        (
            "optional.csv",
            "request_id,arrival_s,prompt_tokens,output_token\na,0,5,7\n",
            "optional.csv:1: output_token: unknown column for the native format; did you mean 'output_tokens'?",
        ),
        (
            "bad.jsonl",
            '{"timestamp": 0, "input_length": 5, "output_length": 3}\n{"timestamp": 1, "input_length": 5,\n',
            "bad.jsonl:2: is not valid JSON",
        ),
        (
            "zero_prompt.csv",
            "num_prefill_tokens,num_decode_tokens\n0,5\n",
            "zero_prompt.csv:2: num_prefill_tokens: is 0; a token count here must be at least 1.",
        ),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, name, text, expected):
    """Tests that each kind of bad trace gives one error line naming the file, line and field."""
    path = _write(tmp_path, name, text)
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / expected.split(":")[0]))
    assert expected in message


def test_bad_parquet_cell_names_the_row(tmp_path):
    """Tests that errors in Parquet files, which have no lines, name the row instead."""
    path = tmp_path / "t.parquet"
    pd.DataFrame({"request_id": ["a", "b"], "arrival_s": [0.0, 1.0], "prompt_tokens": [5, -1]}).to_parquet(path)
    with pytest.raises(TraceError, match=r"t\.parquet: row 2: prompt_tokens: is negative"):
        load_trace(path)


def test_option_errors_are_clear(tmp_path):
    """Tests the errors of load options: missing file, unknown format, misplaced or bad arrival rate."""
    with pytest.raises(TraceError, match="nope.csv: no such file"):
        load_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="unknown format 'azur'; choose one of native, azure"):
        load_trace(DATA / "vidur.csv", format="azur")
    with pytest.raises(TraceError, match="applies only to length-only tables; this azure trace"):
        load_trace(DATA / "azure_2023.csv", arrival_rate=2.0)
    with pytest.raises(TraceError, match="arrival rate must be greater than 0"):
        load_trace(DATA / "lengths.csv", arrival_rate=0.0)


def test_numeric_looking_ids_keep_their_spelling():
    """Tests that ids such as '007' and '7' stay distinct text, not the same number."""
    assert load_trace(DATA / "ids.csv").requests["request_id"].tolist() == ["007", "7"]


def test_gsm8k_token_estimate_counts_digits_words_and_symbols():
    from optimizer.traces.text import estimate_tokens

    # digits 1,6,3,4,9 -> 5; words Janet sells duck eggs a day -> ceil(1.3 x 6) = 8; symbols - - = . -> 4
    text = pd.Series(["Janet sells 16 - 3 - 4 = 9 duck eggs a day.", "a\nb"])
    assert estimate_tokens(text).tolist() == [17, 3 + 1]


def test_bundled_gsm8k_loads_as_an_offline_batch_with_the_estimate_stated():
    trace = load_trace(Path(__file__).resolve().parent.parent.parent / "traces" / "gsm8k_test.jsonl")
    assert trace.format == "gsm8k" and trace.num_requests == 1319 and trace.is_offline_batch
    assert any("estimated" in note for note in trace.notes)
    first = trace.requests.iloc[0]
    # The first answer's <<16-3-4=9>> and <<9*2=18>> notes are not output tokens.
    assert first["request_id"] == "gsm8k-0" and 30 < first["output_tokens"] < 60 and first["prompt_tokens"] > 50
