"""Loading a trace file (CSV, JSON lines or Parquet) into the normalized request table.

Absolute timestamps are
read as UTC when they carry no zone; only differences between them matter.

Every bad cell is reported with the file, the line (the row for Parquet) and the column
as the file names it. Nothing is dropped silently: rows that the source marks as failed
requests (BurstGPT rows with zero response tokens) are left out of the table and listed in
`Trace.excluded` with their line and reason.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from optimizer.common.errors import TraceError
from optimizer.traces.batch import read_batch
from optimizer.traces.formats import FORMATS, TraceFormat, detect
from optimizer.traces.prefixes import declare
from optimizer.traces.text import estimate_tokens
from optimizer.traces.rows import Converted, Options, Rows
from optimizer.traces.table import TARGET_COLUMNS, Trace
from optimizer.traces.tokens import Tokenizer, load_tokenizer


def _container(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    # Editors on Windows start UTF-8 files with a byte-order mark; it is not content.
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def _read_csv(path: Path, forced: str | None) -> tuple[Rows, TraceFormat]:
    try:
        header = [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
        fmt = detect(header, str(path), forced)
        with warnings.catch_warnings():
            # Columns of mixed types are expected in bad files; the column readers report them.
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            # keep_default_na=False: an id such as "NA" or "null" stays text; empty cells
            # are found and reported by the column readers instead.
            raw = pd.read_csv(path, keep_default_na=False, skip_blank_lines=False)
            raw.columns = [str(c).strip() for c in raw.columns]
            # Reading every column as text is 5-10x slower, so only columns that pandas took
            # for numbers are read again as text, keeping ids such as "007" exactly.
            retext = [i for i, c in enumerate(raw.columns) if c in fmt.text_columns and is_numeric_dtype(raw[c])]
            if retext:
                again = pd.read_csv(path, usecols=retext, dtype=str, keep_default_na=False, skip_blank_lines=False)
                for i in retext:
                    raw[raw.columns[i]] = again.iloc[:, retext.index(i)].to_numpy()
    except pd.errors.EmptyDataError:
        raise TraceError("the file is empty.", path=path) from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"is not UTF-8 text (byte {exc.start}).", path=path) from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            expected, line, saw = map(int, found.groups())
            raise TraceError(f"has {saw} fields but the header has {expected}.", path=path, line=line) from None
        raise TraceError(f"is not a readable CSV file ({str(exc).strip()}).", path=path) from None
    # Empty lines at the end of a CSV file are not requests; empty lines before them are errors.
    blank = _blank_rows(raw)
    end = len(raw)
    while end > 0 and blank[end - 1]:
        end -= 1
    rows = Rows(raw.iloc[:end], str(path), np.arange(end) + 2)
    if blank[:end].any():
        raise rows.error("is blank; every line after the header must be a request.", int(np.argmax(blank[:end])))
    return rows, fmt


def _blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty (none when a column is numeric: it has no empty cells)."""
    if raw.empty or any(is_numeric_dtype(raw[c]) for c in raw.columns):
        return np.zeros(len(raw), dtype=bool)
    return np.logical_and.reduce([(raw[c].astype(str).str.strip() == "").to_numpy() for c in raw.columns])


def _read_jsonl(path: Path, forced: str | None, tokenizer: Tokenizer | None = None) -> tuple[Rows, TraceFormat]:
    if forced == "batch" or (forced is None and _looks_like_batch(path)):
        # Batch files are read line by line without keeping their JSON (a million lines).
        return read_batch(path, tokenizer), FORMATS["batch"]
    records, lines = [], []
    with open(path, encoding="utf-8-sig") as f:
        try:
            for number, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise TraceError(f"is not valid JSON ({exc.msg}).", path=path, line=number) from None
                if not isinstance(record, dict):
                    raise TraceError("is not a JSON object.", path=path, line=number)
                records.append(record)
                lines.append(number)
        except UnicodeDecodeError as exc:
            raise TraceError(f"is not UTF-8 text (byte {exc.start}).", path=path) from None
    if not records:
        raise TraceError("the file is empty.", path=path)
    raw = pd.DataFrame.from_records(records)
    fmt = detect(list(raw.columns), str(path), forced)
    return Rows(raw, str(path), np.asarray(lines)), fmt


def _looks_like_batch(path: Path) -> bool:
    """True when the first line is a JSON object with a batch request's keys."""
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    first = json.loads(raw.removeprefix(b"\xef\xbb\xbf"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return False
                return isinstance(first, dict) and set(FORMATS["batch"].required).issubset(first)
    return False


def _read_parquet(path: Path, forced: str | None) -> tuple[Rows, TraceFormat]:
    try:
        raw = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise TraceError(f"is not a readable Parquet file ({type(exc).__name__}: {exc}).", path=path) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    fmt = detect(list(raw.columns), str(path), forced)
    return Rows(raw.reset_index(drop=True), str(path), np.arange(len(raw)) + 1, unit="row"), fmt


def load_trace(
    path: str | Path,
    *,
    format: str | None = None,
    arrival_rate: float | None = None,
    seed: int = 0,
    model: str | None = None,
    tokenizer: str | Path | None = None,
    shared_prefix_tokens: int | None = None,
    samples_per_prompt: int | None = None,
    prefix_text: str | Path | None = None,
) -> Trace:
    """Load a trace file into the normalized request table.

    Args:
        path: a CSV, JSON-lines or Parquet file in one of `FORMATS`.
        format: force a format instead of detecting it from the columns.
        arrival_rate: for length-only tables, draw Poisson arrivals at this many requests
            per second (seeded by `seed`); without it they form an offline batch.
        seed: seed of every random draw made while loading.
        model: serve every request with this model, replacing what the trace says.
        tokenizer: batch files: count prompt tokens with this tokenizer.json or Hugging
            Face model folder (offline, `optimizer.traces.tokens`) instead of estimating.
        shared_prefix_tokens: every prompt begins with the same this many tokens (a system
            prompt); `optimizer.traces.prefixes`.
        samples_per_prompt: repeat every request this many times, the copies sharing
            their whole prompt (ids '<id>#s<k>'); `optimizer.traces.prefixes`.
        prefix_text: text formats (GSM8K): a text file (few-shot examples, a system prompt)
            put before every prompt, its tokens estimated as the prompts' are, and shared.

    Raises:
        TraceError: naming the file, line and column of the first problem.
    """
    path = Path(path)
    if path.is_dir():
        raise TraceError("is a folder; give a trace file (CSV, JSON lines or Parquet).", path=path)
    if not path.is_file():
        raise TraceError("no such file." if not path.exists() else "is not a regular file.", path=path)
    if arrival_rate is not None and not arrival_rate > 0:
        raise TraceError(f"the arrival rate must be greater than 0 requests/s, got {arrival_rate:g}.", path=path)
    container = _container(path)
    loaded_tokenizer = None if tokenizer is None else load_tokenizer(tokenizer)
    if container == "jsonl":
        rows, fmt = _read_jsonl(path, format, loaded_tokenizer)
    else:
        rows, fmt = {"csv": _read_csv, "parquet": _read_parquet}[container](path, format)
    if len(rows) == 0:
        raise TraceError("has a header but no requests.", path=path)
    if arrival_rate is not None and fmt.name != "lengths":
        raise TraceError(
            f"an arrival rate applies only to length-only tables; this {fmt.name} trace has its own arrival times.",
            path=path,
        )
    options = Options(arrival_rate, seed)
    if fmt.name == "batch":
        converted = fmt.convert(rows, options, loaded_tokenizer)
    elif tokenizer is not None:
        raise TraceError(f"a tokenizer applies only to batch files, not to this {fmt.name} trace.", path=path)
    else:
        converted = fmt.convert(rows, options)
    requests, excluded = _assemble(rows, converted)
    if requests.empty:
        raise TraceError(f"has no requests left: each of its {len(excluded)} rows is a {converted.excluded_reason}.", path=path)
    if model is not None:
        requests["model"] = model
    _reject_duplicate_ids(requests, rows, converted, fmt)
    notes = list(converted.notes)
    if prefix_text is not None:
        requests, shared_prefix_tokens, note = _with_prefix_text(requests, fmt, path, Path(prefix_text), shared_prefix_tokens)
        notes.append(note)
    requests = declare(requests, str(path), shared_prefix_tokens=shared_prefix_tokens, samples_per_prompt=samples_per_prompt)
    if len(excluded):
        first = ", ".join(map(str, excluded["line"].head(5)))
        notes.append(
            f"Left out {len(excluded)} rows, each a {converted.excluded_reason} "
            f"({rows.unit}s {first}{', ...' if len(excluded) > 5 else ''})."
        )
    return Trace(requests, str(path), fmt.name, excluded, tuple(notes))


def _with_prefix_text(requests: pd.DataFrame, fmt: TraceFormat, path: Path, text_path: Path,
                      shared_prefix_tokens: int | None) -> tuple[pd.DataFrame, int, str]:
    """Prompts behind a shared text: its estimated tokens added to each, and shared with the
    BOS token (`optimizer.traces.text.estimate_tokens`)."""
    if fmt.name != "gsm8k":
        raise TraceError(f"a prefix text applies to text formats (gsm8k), not to this {fmt.name} trace, whose prompts "
                         "are token counts; declare a shared prefix with --shared-prefix-tokens instead.", path=path)
    if shared_prefix_tokens is not None:
        raise TraceError("give either a prefix text or a number of shared prefix tokens, not both.", path=path)
    try:
        text = text_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot be read as UTF-8 text ({type(exc).__name__}).", path=text_path) from None
    if not text.strip():
        raise TraceError("is empty; a prefix text needs some text.", path=text_path)
    tokens = int(estimate_tokens(pd.Series([text]))[0])
    requests = requests.assign(prompt_tokens=requests["prompt_tokens"] + tokens)
    return requests, tokens + 1, f"Every prompt begins with {text_path} ({tokens:,} tokens, estimated), shared with the BOS token."


def _assemble(rows: Rows, converted: Converted) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The normalized table from converted columns, with defaults for absent ones."""
    columns = converted.columns
    n = len(next(iter(columns.values())))
    table = pd.DataFrame(
        {
            "request_id": pd.Series(columns["request_id"], dtype=str).reset_index(drop=True),
            "arrival_s": np.asarray(columns["arrival_s"], dtype=float),
            "prompt_tokens": np.asarray(columns["prompt_tokens"], dtype=np.int64),
            "output_tokens": _nullable_tokens(columns.get("output_tokens"), n),
            "predicted_output_tokens": _nullable_tokens(columns.get("predicted_output_tokens"), n),
            "model": pd.Series(columns.get("model", [""] * n), dtype=str).reset_index(drop=True),
            "priority": np.asarray(columns.get("priority", np.zeros(n)), dtype=np.int64),
            **{name: np.asarray(columns.get(name, np.full(n, np.nan)), dtype=float) for name in TARGET_COLUMNS},
        }
    )
    for name in ("hash_ids", "prefix_group", "prefix_tokens"):
        if name in columns:
            table[name] = pd.Series(columns[name], dtype=object if name != "prefix_group" else str).reset_index(drop=True)
    excluded = pd.DataFrame({"line": pd.Series(dtype="int64"), "reason": pd.Series(dtype="str")})
    if converted.keep is not None and not converted.keep.all():
        excluded = pd.DataFrame({"line": rows.lines[~converted.keep], "reason": converted.excluded_reason})
        table = table[converted.keep].reset_index(drop=True)
    return table, excluded


def _nullable_tokens(values: object, n: int) -> pd.api.extensions.ExtensionArray:
    """A token column as nullable Int64 (all <NA> when the source has no such column)."""
    if values is None:
        return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))
    if isinstance(values, pd.arrays.IntegerArray):
        return values
    return pd.arrays.IntegerArray(np.asarray(values, dtype=np.int64), np.zeros(n, dtype=bool))


def _reject_duplicate_ids(requests: pd.DataFrame, rows: Rows, converted: Converted, fmt: TraceFormat) -> None:
    if "request_id" not in fmt.required:
        return  # ids made from row numbers are unique by construction
    duplicated = requests["request_id"].duplicated().to_numpy()
    if not duplicated.any():
        return
    row = int(np.argmax(duplicated))
    request_id = requests["request_id"].iloc[row]
    first = int(np.argmax((requests["request_id"] == request_id).to_numpy()))
    id_column = "request_id"
    if converted.keep is None and len(requests) == len(rows):
        raise rows.error(f"duplicate request id {request_id!r} (first used on {rows.unit} {rows.lines[first]}).", row, id_column)
    raise TraceError(f"duplicate request id {request_id!r}.", path=rows.path, field=id_column)
