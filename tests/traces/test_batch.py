"""Tests of OpenAI batch files as a trace: detection, token counts, caps, n, models, bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimizer import load_trace
from optimizer.common.errors import TraceError
from optimizer.traces.batch import cap_predictions

ROOT = Path(__file__).parent.parent.parent


def chat(custom_id: str, content: str = "hello world", **body) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "llama2-70b", "messages": [{"role": "user", "content": content}], **body},
    }


def write_lines(path: Path, records: list, *, prefix: bytes = b"") -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_bytes(prefix + ("\n".join(lines) + "\n").encode())
    return path


def make_tokenizer(folder: Path, template: str | None = None) -> Path:
    """A tiny word-level tokenizer (whitespace and punctuation split) saved in `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    if template is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "bos_token": "<s>"}))
    return folder


def test_the_bundled_example_is_detected_as_a_batch_file_of_300_chat_requests():
    """Tests that the bundled GSM8K batch file loads as a batch trace: 300 requests, offline,
    model from the body, prompt tokens estimated (and said so), max_tokens as the prediction."""
    trace = load_trace(ROOT / "traces" / "batch" / "gsm8k.jsonl")
    requests = trace.requests
    assert trace.format == "batch" and trace.num_requests == 300 and trace.is_offline_batch
    assert requests["request_id"].iloc[0] == "gsm8k-0" and set(requests["model"]) == {"llama2-70b"}
    assert requests["output_tokens"].isna().all() and (requests["predicted_output_tokens"] == 512).all()
    assert (requests["prompt_tokens"] > 30).all()
    assert any("estimated" in note for note in trace.notes)


def test_a_tokenizer_file_counts_contents_plus_the_chat_overhead(tmp_path):
    """Tests the tokenizer path without a chat template: 'hello world' is 2 tokens, + 4 for
    the message and 3 for the assistant turn = 9; a completion prompt is its tokens + 1 BOS."""
    tokenizer = make_tokenizer(tmp_path / "tok") / "tokenizer.json"
    completion = {"custom_id": "c", "url": "/v1/completions", "body": {"model": "m", "prompt": "hello world world", "max_tokens": 5}}
    ids = {"custom_id": "t", "url": "/v1/completions", "body": {"model": "m", "prompt": [1, 2, 3, 4], "max_tokens": 5}}
    path = write_lines(tmp_path / "b.jsonl", [chat("a", max_tokens=7), completion, ids])
    trace = load_trace(path, tokenizer=tokenizer)
    assert trace.requests["prompt_tokens"].tolist() == [9, 4, 4]
    assert any("tokenizer" in note and "tok" in note for note in trace.notes)


def test_a_model_folder_renders_its_chat_template_before_counting(tmp_path):
    """Tests that a folder's chat template is applied: '<|user|>hello world' then
    '<|assistant|>' split into 8 pre-tokens by the tiny tokenizer."""
    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    folder = make_tokenizer(tmp_path / "model", template)
    path = write_lines(tmp_path / "b.jsonl", [chat("a", max_tokens=7)])
    trace = load_trace(path, tokenizer=folder)
    assert trace.requests["prompt_tokens"].tolist() == [8]
    assert any("chat template" in note for note in trace.notes)


def test_a_folder_without_a_tokenizer_is_one_clear_error(tmp_path):
    """Tests that --tokenizer naming a folder without tokenizer.json names it."""
    path = write_lines(tmp_path / "b.jsonl", [chat("a")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceError, match="empty: has no tokenizer.json"):
        load_trace(path, tokenizer=tmp_path / "empty")


def test_n_expands_into_requests_sharing_the_prompt_and_models_are_kept(tmp_path):
    """Tests that n = 3 gives three requests '<id>#0..2' with the same prompt, and that each
    request keeps its body's model."""
    other = chat("b", max_tokens=9)
    other["body"]["model"] = "bloom-176b"
    path = write_lines(tmp_path / "b.jsonl", [chat("a", n=3, max_tokens=5), other])
    requests = load_trace(path).requests
    assert requests["request_id"].tolist() == ["a#0", "a#1", "a#2", "b"]
    assert requests["prompt_tokens"].nunique() == 1
    assert requests["model"].tolist() == ["llama2-70b"] * 3 + ["bloom-176b"]
    assert requests["predicted_output_tokens"].tolist() == [5, 5, 5, 9]


def test_predictions_are_capped_at_max_tokens(tmp_path):
    """Tests that a prediction above a request's max_tokens is lowered to it, one below is kept."""
    path = write_lines(tmp_path / "b.jsonl", [chat("a", max_tokens=50), chat("b", max_tokens=500)])
    loaded = load_trace(path).requests
    predicted = loaded.copy()
    predicted["predicted_output_tokens"] = predicted["predicted_output_tokens"] * 0 + 200
    assert cap_predictions(predicted, loaded)["predicted_output_tokens"].tolist() == [50, 200]


def test_a_byte_order_mark_and_crlf_lines_load(tmp_path):
    """Tests that a batch file (and any JSON-lines trace) starting with a UTF-8 byte-order
    mark loads, with Windows line ends."""
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(chat("a", max_tokens=3)) + "\r\n").encode())
    assert load_trace(path).requests["request_id"].tolist() == ["a"]
    mooncake = tmp_path / "m.jsonl"
    mooncake.write_bytes(b"\xef\xbb\xbf" + (ROOT / "tests" / "data" / "mooncake.jsonl").read_bytes())
    assert load_trace(mooncake).format == "mooncake"


def test_a_folder_given_as_a_trace_is_one_clear_line(tmp_path):
    """Tests that a directory as the trace says it is a folder."""
    with pytest.raises(TraceError, match="is a folder; give a trace file"):
        load_trace(tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "b.jsonl:2: is not valid JSON"),
        ('["a"]', "b.jsonl:2: is not a JSON object"),
        (json.dumps({"method": "POST", "body": {}}), "b.jsonl:2: custom_id: has no custom_id"),
        (json.dumps({"custom_id": "x"}), "b.jsonl:2: body: has no body"),
        (json.dumps(chat("a")), "b.jsonl:2: custom_id: duplicate custom_id 'a' (first used on line 1)"),
        (json.dumps({**chat("x"), "url": "/v1/embeddings"}), "b.jsonl:2: url: unknown url '/v1/embeddings'"),
        (json.dumps({**chat("x"), "method": "GET"}), "b.jsonl:2: method: 'GET' is not POST"),
        (json.dumps(chat("x", max_tokens=0)), "b.jsonl:2: body.max_tokens: 0 is not a whole number"),
        (json.dumps(chat("x", max_tokens=1.5)), "b.jsonl:2: body.max_tokens: 1.5 is not a whole number"),
        (json.dumps(chat("x", n=1000)), "b.jsonl:2: body.n: 1000 is not a whole number from 1 to 128"),
        (json.dumps({"custom_id": "x", "url": "/v1/chat/completions", "body": {"messages": []}}), "b.jsonl:2: body.messages: is not a non-empty list"),
        (json.dumps({"custom_id": "x", "url": "/v1/completions", "body": {"prompt": ["a", "b"]}}), "b.jsonl:2: body.prompt: is not one text"),
    ],
)
def test_bad_lines_are_one_error_naming_the_file_and_line(tmp_path, line, message):
    """Tests that each kind of bad line is reported with the file, the line and the field."""
    path = write_lines(tmp_path / "b.jsonl", [chat("a"), line])
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert message in str(caught.value)


def test_trace_stats_takes_a_tokenizer_and_rejects_it_for_other_formats(tmp_path):
    """Tests `--tokenizer` on the command line: a batch file's prompts are counted by it
    (9 tokens, as above); on a CSV trace it is one line saying it applies to batch files."""
    from typer.testing import CliRunner

    from cli import app

    folder = make_tokenizer(tmp_path / "tok")
    path = write_lines(tmp_path / "b.jsonl", [chat("a", max_tokens=7)])
    result = CliRunner().invoke(app, ["trace", "stats", str(path), "--tokenizer", str(folder / "tokenizer.json"), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["prompt_tokens"]["total"] == 9
    result = CliRunner().invoke(app, ["trace", "stats", str(ROOT / "tests" / "data" / "native.csv"), "--tokenizer", str(folder)])
    assert result.exit_code == 1 and "a tokenizer applies only to batch files" in result.stderr
