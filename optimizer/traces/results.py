"""A batch runner's output files joined back to its input: the actual lengths of a run.

Each output line (vLLM ``run-batch``, the OpenAI and SGLang batch APIs) is::

    {"id": ..., "custom_id": "q-1", "error": null,
     "response": {"status_code": 200, "body": {..., "usage": {"prompt_tokens": 97, "completion_tokens": 212}}}}

A request succeeded when ``error`` is null, the status code is 200 (or absent) and the body
has its usage; its prompt and output tokens are then the runner's counts. A line with
n > 1 reports the completion tokens of all n choices together: each of its requests gets
an equal share (the remainder to the first ones), and a note says so.

Nothing is dropped: a request that errored, or that no output file mentions, stays in
the trace with its prompt tokens from the input (counted or estimated as the loader
does), its output length unknown and its ``max_tokens`` cap as the prediction (the
requests that finished have no prediction: their actual length is known), and is listed
in `Results.failed` with the reason. A line for a custom_id the input does not
have, or a second result for the same one, is an error naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import TraceError
from optimizer.traces.batch import batch_lines, json_object, raw_lines, request_ids
from optimizer.traces.load import load_trace
from optimizer.traces.table import Trace


@dataclass(frozen=True)
class Results:
    """A batch file's requests with the lengths a run measured, and what did not finish."""

    trace: Trace
    #: One row per input line without a usable result: custom_id, line (of the input),
    #: status ("error" or "missing"), reason, and the file:line of the result if any.
    failed: pd.DataFrame

    @property
    def num_completed(self) -> int:
        return int(self.trace.requests["output_tokens"].notna().sum())


def read_results(output_paths: list[str | Path], requests_path: str | Path, *, tokenizer: str | Path | None = None) -> Results:
    """Join runner output files to the batch file they ran (see the module docstring).

    Raises:
        TraceError: a bad output line, naming its file and line.
    """
    if not output_paths:
        raise TraceError("no results file given.", path=requests_path)
    batch = load_trace(requests_path, format="batch", tokenizer=tokenizer)
    table = batch.requests.copy()
    custom = _custom_ids(requests_path)  # custom_id -> (input line, n)
    found: dict[str, tuple[str, int, dict | None, str]] = {}  # custom_id -> (file, line, usage, error)
    for path in output_paths:
        _read_output(Path(path), custom, found)
    row_of = {request_id: i for i, request_id in enumerate(table["request_id"].tolist())}
    prompt = table["prompt_tokens"].to_numpy().copy()
    output = np.zeros(len(table), dtype=np.int64)
    known = np.zeros(len(table), dtype=bool)
    failed, shared = [], 0
    for custom_id, (line, n) in custom.items():
        rows = [row_of[request_id] for request_id in request_ids(custom_id, n)]
        if custom_id not in found:
            failed.append((custom_id, line, "missing", "no output file has a result for it", ""))
            continue
        file, number, usage, error = found[custom_id]
        if error:
            failed.append((custom_id, line, "error", error, f"{file}:{number}"))
            continue
        prompt[rows] = usage["prompt_tokens"]
        share, rest = divmod(usage["completion_tokens"], n)
        output[rows] = share + (np.arange(n) < rest)
        known[rows] = True
        shared += n > 1
    table["prompt_tokens"] = np.maximum(prompt, 1)
    table["output_tokens"] = pd.arrays.IntegerArray(np.maximum(output, 1), ~known)
    # The cap stays the prediction only where the length is still unknown, so a plan made on
    # this trace uses the actual lengths where the run measured them.
    cap = table["predicted_output_tokens"].array
    table["predicted_output_tokens"] = pd.arrays.IntegerArray(cap.to_numpy(dtype=np.int64, na_value=0), cap.isna() | known)
    failed_table = pd.DataFrame(failed, columns=["custom_id", "line", "status", "reason", "result"])
    notes = [f"Prompt and output tokens of {int(known.sum()):,} requests are the runner's usage counts from {len(output_paths)} results file(s)."]
    if shared:
        notes.append(f"{shared:,} lines with n > 1 report their n completions' tokens together: split equally between their requests.")
    if len(failed_table):
        counts = failed_table["status"].value_counts()
        notes.append(
            f"{int(counts.get('error', 0)):,} requests errored and {int(counts.get('missing', 0)):,} have no result: kept with "
            "prompt tokens from the input and output length unknown (planned at max_tokens), listed by `trace from-results`."
        )
    if len(failed_table):  # their prompt tokens come from the input: say how it was counted
        notes += [note for note in batch.notes if note.startswith(("No --tokenizer", "Prompt tokens counted"))]
    return Results(Trace(table, str(requests_path), "batch results", notes=tuple(notes)), failed_table)


def _custom_ids(requests_path) -> dict[str, tuple[int, int]]:
    """custom_id -> (input line, n) in file order, read as the loader read them."""
    return {line.custom_id: (line.line, line.n) for line in batch_lines(requests_path)}


def _read_output(path: Path, custom: dict, found: dict) -> None:
    if path.is_dir():
        raise TraceError("is a folder; give the runner's output files (e.g. out/*.jsonl).", path=path)
    if not path.is_file():
        raise TraceError("no such file.", path=path)
    for number, _, raw in raw_lines(path):
        record = json_object(path, number, raw)
        custom_id = record.get("custom_id")
        if not isinstance(custom_id, str):
            raise TraceError("has no custom_id; is this a batch runner's output file?", path=path, line=number, field="custom_id")
        if custom_id not in custom:
            raise TraceError(f"{custom_id!r} is not a request of the batch file; give the file that was run.", path=path, line=number, field="custom_id")
        if custom_id in found:
            first = found[custom_id]
            raise TraceError(f"{custom_id!r} already has a result ({first[0]}:{first[1]}).", path=path, line=number, field="custom_id")
        usage, error = _outcome(record, path, number)
        found[custom_id] = (str(path), number, usage, error)


def _outcome(record: dict, path: Path, number: int) -> tuple[dict | None, str]:
    """The usage of a successful result, or the reason a result is an error."""
    error = record.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        return None, str(message or error)
    response = record.get("response")
    if not isinstance(response, dict):
        return None, "no response and no error"
    status = response.get("status_code", 200)
    body = response.get("body")
    if status != 200:
        message = body.get("message") or body.get("error") if isinstance(body, dict) else None
        if isinstance(message, dict):
            message = message.get("message")
        return None, f"status {status}" + (f": {message}" if message else "")
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None, "the response has no usage counts"
    counts = {}
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TraceError(f"{value!r} is not a token count.", path=path, line=number, field=f"response.body.usage.{key}")
        counts[key] = value
    return counts, ""
