"""OpenAI batch files (``batch.jsonl``): the input of vLLM's ``run-batch``, SGLang and the
hosted batch services, read as a trace.

One request per line::

    {"custom_id": "q-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "llama2-70b", "messages": [...], "max_tokens": 512, "n": 1}}

- ``custom_id`` (text, unique) names the request; ``url`` is /v1/chat/completions or
  /v1/completions (``body.prompt``: one text or one list of token ids); ``method`` is POST.
- Prompt tokens: counted by a tokenizer when one is given (`optimizer.traces.tokens`),
  else estimated from the text, and the load notes say which.
- Output tokens: unknown before the run. ``max_tokens`` (or ``max_completion_tokens``) is
  the cap, and plans use it as the predicted length (the worst case) until a predictor
  from an earlier run's results (`optimizer.traces.results`) replaces it.
- ``n`` > 1 asks for n completions of one prompt: n requests with ids
  ``<custom_id>#<k>``, k = 0 .. n-1, sharing the prompt.
- ``body.model`` is each request's model: requests go only to replicas serving it.

The file's lines themselves (`batch_lines`) are what per-replica batch files are cut from,
byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import TraceError
from optimizer.traces.rows import Converted, Options, Rows, untimed_arrivals
from optimizer.traces.tokens import Tokenizer, chat_prompt_tokens, completion_prompt_tokens

CHAT_URL = "/v1/chat/completions"
COMPLETIONS_URL = "/v1/completions"
URLS = (CHAT_URL, COMPLETIONS_URL)
#: The OpenAI API's own limit on completions per request.
MAX_N = 128
#: Larger than any model's context: a larger cap is a typo, not a request.
MAX_OUTPUT_TOKENS = 10_000_000
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request line of a batch file, as the runner will read it."""

    line: int
    custom_id: str
    n: int
    model: str
    offset: int  # where the line's bytes start in the file (after a byte-order mark)
    size: int  # how many bytes it has, its line end included

    def read(self, file) -> bytes:
        """The line's bytes from the open batch file, ending in a newline (the last line of a
        file may lack one)."""
        file.seek(self.offset)
        raw = file.read(self.size)
        return raw if raw.endswith(b"\n") else raw + b"\n"

    @property
    def request_ids(self) -> list[str]:
        return request_ids(self.custom_id, self.n)


def request_ids(custom_id: str, n: int) -> list[str]:
    """Ids of the requests of one line: the custom_id, or ``<custom_id>#<k>`` when n > 1."""
    return [custom_id] if n == 1 else [f"{custom_id}#{k}" for k in range(n)]


def raw_lines(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line number, byte offset, bytes) of every non-blank line; a leading
    byte-order mark is not part of the first line."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            start = offset
            offset += len(raw)
            if number == 1 and raw.startswith(_BOM):
                raw, start = raw[len(_BOM) :], start + len(_BOM)
            if raw.strip():
                yield number, start, raw


def json_object(path: str | Path, number: int, raw: bytes) -> dict:
    """A line of a JSON-lines file as a JSON object; errors name the file and line."""
    try:
        record = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise TraceError(f"is not UTF-8 text (byte {exc.start}).", path=path, line=number) from None
    except json.JSONDecodeError as exc:
        raise TraceError(f"is not valid JSON ({exc.msg}).", path=path, line=number) from None
    if not isinstance(record, dict):
        raise TraceError("is not a JSON object.", path=path, line=number)
    return record


def _parse(path: str | Path, number: int, raw: bytes) -> dict:
    """A line as a batch request: a JSON object with a text custom_id and a body."""
    record = json_object(path, number, raw)
    custom_id = record.get("custom_id")
    if custom_id is None:
        raise TraceError("has no custom_id; every request of a batch file needs one.", path=path, line=number, field="custom_id")
    if not isinstance(custom_id, str) or not custom_id.strip():
        raise TraceError(f"{custom_id!r} is not a non-empty text id.", path=path, line=number, field="custom_id")
    if not isinstance(record.get("body"), dict):
        what = "has no body" if "body" not in record else "is not a JSON object"
        raise TraceError(f"{what}; a batch request needs its body.", path=path, line=number, field="body")
    return record


def _count(body: dict, key: str, path, number: int, *, maximum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise TraceError(f"{value!r} is not a whole number from 1 to {maximum:,}.", path=path, line=number, field=f"body.{key}")
    return value


def batch_lines(path: str | Path) -> list[BatchLine]:
    """The request lines of a batch file with their ids, n, model and place in the file
    (checked as the loader checks them); their bytes stay in the file until written."""
    found = []
    for number, offset, raw in raw_lines(path):
        record = _parse(path, number, raw)
        body = record["body"]
        n = _count(body, "n", path, number, maximum=MAX_N) or 1
        model = body.get("model")
        found.append(BatchLine(number, record["custom_id"], n, model if isinstance(model, str) else "", offset, len(raw)))
    return found


#: Prompts are counted every this many lines, so only their counts are kept, not their text.
CHUNK_LINES = 65_536


def read_batch(path: str | Path, tokenizer: Tokenizer | None = None) -> Rows:
    """Raw rows of a batch file, one per line: custom_id, url, model, n, max_tokens, prompt_tokens.

    Reads line by line and keeps only what planning needs (not the JSON objects nor the
    prompts' text, counted in chunks as they are read), so a million lines fit in memory.
    Every structural problem is reported at its line.
    """
    columns: dict[str, list] = {"custom_id": [], "url": [], "model": [], "n": [], "max_tokens": []}
    lines, first_line = [], {}
    prompts: list[object] = []  # of the lines not counted yet
    counted: list[np.ndarray] = []
    for number, _, raw in raw_lines(path):
        record = _parse(path, number, raw)
        custom_id, body = record["custom_id"], record["body"]
        if custom_id in first_line:
            raise TraceError(f"duplicate custom_id {custom_id!r} (first used on line {first_line[custom_id]}).", path=path, line=number, field="custom_id")
        first_line[custom_id] = number
        method = record.get("method", "POST")
        if method != "POST":
            raise TraceError(f"{method!r} is not POST, the only method of batch requests.", path=path, line=number, field="method")
        url = record.get("url", CHAT_URL if "messages" in body else COMPLETIONS_URL)
        if url not in URLS:
            raise TraceError(f"unknown url {url!r}; batch planning reads {' and '.join(URLS)}.", path=path, line=number, field="url")
        model = body.get("model", "")
        if not isinstance(model, str):
            raise TraceError(f"{model!r} is not a model name.", path=path, line=number, field="body.model")
        n = _count(body, "n", path, number, maximum=MAX_N) or 1
        cap = _count(body, "max_tokens", path, number, maximum=MAX_OUTPUT_TOKENS)
        if cap is None:
            cap = _count(body, "max_completion_tokens", path, number, maximum=MAX_OUTPUT_TOKENS)
        columns["custom_id"].append(custom_id)
        columns["url"].append(url)
        columns["model"].append(model)
        columns["n"].append(n)
        columns["max_tokens"].append(cap)
        prompts.append(_prompt(body, url, path, number))
        lines.append(number)
        if len(prompts) == CHUNK_LINES:
            counted.append(prompt_tokens(columns["url"][-len(prompts) :], prompts, tokenizer))
            prompts = []
    if not lines:
        raise TraceError("the file is empty.", path=path)
    if prompts:
        counted.append(prompt_tokens(columns["url"][-len(prompts) :], prompts, tokenizer))
    raw_table = pd.DataFrame(
        {
            "custom_id": pd.Series(columns["custom_id"], dtype=str),
            "url": pd.Series(columns["url"], dtype=str),
            "model": pd.Series(columns["model"], dtype=str),
            "n": np.asarray(columns["n"], dtype=np.int64),
            "max_tokens": pd.array(columns["max_tokens"], dtype="Int64"),
            "prompt_tokens": np.concatenate(counted),
        }
    )
    return Rows(raw_table, str(path), np.asarray(lines, dtype=np.int64))


def _prompt(body: dict, url: str, path, number: int) -> object:
    """The prompt of one request: a list of messages (chat), a text or a list of token ids."""
    if url == CHAT_URL:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise TraceError("is not a non-empty list of message objects.", path=path, line=number, field="body.messages")
        return messages
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt:
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt  # token ids: their count is the prompt length
    raise TraceError(
        "is not one text or one list of token ids (give one prompt per line).", path=path, line=number, field="body.prompt"
    )


def batch(rows: Rows, options: Options, tokenizer: Tokenizer | None = None) -> Converted:
    """The requests of a batch file's rows (`read_batch`, which counted the prompts with `tokenizer`)."""
    raw = rows.raw
    n = raw["n"].to_numpy()
    notes = [_counted_how(tokenizer, bool((raw["url"] == CHAT_URL).any()))]
    ids = [request_id for custom_id, k in zip(raw["custom_id"].tolist(), n.tolist()) for request_id in request_ids(custom_id, k)]
    repeated = pd.Series(ids, dtype=str)
    clash = repeated.duplicated().to_numpy()
    if clash.any():
        request_id = repeated.iloc[int(np.argmax(clash))]
        raise TraceError(f"request id {request_id!r} of a line with n > 1 is also another line's custom_id.", path=rows.path, field="custom_id")
    arrival_s, arrivals = untimed_arrivals(len(ids), options)
    cap = raw["max_tokens"].array
    columns = {
        "request_id": repeated,
        "arrival_s": arrival_s,
        "prompt_tokens": np.repeat(raw["prompt_tokens"].to_numpy(), n),
        "predicted_output_tokens": pd.arrays.IntegerArray(
            np.repeat(cap.to_numpy(dtype=np.int64, na_value=0), n), np.repeat(cap.isna(), n)
        ),
        "model": pd.Series(np.repeat(raw["model"].to_numpy(dtype=object), n), dtype=str),
    }
    no_cap = int(cap.isna().sum())
    notes.append(
        "Output lengths are unknown before the run: without predictions (--predictor, fitted on an earlier run's "
        "results from `trace from-results`), plans use each request's max_tokens cap (the worst case)."
        + (f" {no_cap:,} lines have no max_tokens: plan them with --predictor." if no_cap else "")
    )
    if (n > 1).any():
        notes.append(f"{int((n > 1).sum()):,} lines with n > 1 became {int(n[n > 1].sum()):,} requests with ids '<custom_id>#<k>' sharing their prompt.")
    notes.append(arrivals)
    return Converted(columns, notes=notes)


def prompt_tokens(urls: list[str], prompts: list[object], tokenizer: Tokenizer | None) -> np.ndarray:
    """Prompt tokens of requests (`optimizer.traces.tokens`), at least 1."""
    counts = np.zeros(len(prompts), dtype=np.int64)
    chat = np.fromiter((url == CHAT_URL for url in urls), dtype=bool, count=len(urls))
    is_ids = np.fromiter((isinstance(p, list) and not c for p, c in zip(prompts, chat)), dtype=bool, count=len(prompts))
    text = ~chat & ~is_ids
    if chat.any():
        counts[chat] = chat_prompt_tokens([prompts[i] for i in np.flatnonzero(chat)], tokenizer)
    if text.any():
        counts[text] = completion_prompt_tokens([prompts[i] for i in np.flatnonzero(text)], tokenizer)
    if is_ids.any():
        counts[is_ids] = [len(prompts[i]) for i in np.flatnonzero(is_ids)]
    return np.maximum(counts, 1)


def _counted_how(tokenizer: Tokenizer | None, has_chat: bool) -> str:
    """The load note saying how prompt tokens were counted."""
    if tokenizer is None:
        return (
            "No --tokenizer: prompt tokens estimated as digits + 1.3 x words + symbols + newlines of the text "
            "(Llama-2 conventions), + 4 per chat message and 3 for the assistant turn (+1 BOS for completions)."
        )
    if tokenizer.chat_template is not None or not has_chat:
        return f"Prompt tokens counted with the tokenizer {tokenizer.describe()}."
    return (
        f"Prompt tokens counted with the tokenizer {tokenizer.describe()}: chat contents tokenized, "
        "+ 4 per message and 3 for the assistant turn."
    )


def cap_predictions(requests: pd.DataFrame, loaded: pd.DataFrame) -> pd.DataFrame:
    """`requests` (a batch file's table with predictions made since loading) with each
    prediction at most the request's max_tokens, the cap the loader left in `loaded`'s
    predicted_output_tokens: a request never produces more than its cap."""
    cap = loaded["predicted_output_tokens"].to_numpy(dtype=float, na_value=np.inf)
    predicted = requests["predicted_output_tokens"].to_numpy(dtype=float, na_value=np.nan)
    capped = np.fmin(predicted, cap)  # NaN (no prediction) stays NaN
    if np.array_equal(capped, predicted, equal_nan=True):
        return requests
    table = requests.copy()
    known = ~np.isnan(capped)
    table["predicted_output_tokens"] = pd.arrays.IntegerArray(np.where(known, capped, 0).astype(np.int64), ~known)
    return table
