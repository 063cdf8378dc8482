"""Request traces: the formats found in the wild, loaded into one normalized request table.

The normalized table has one row per request, in file order:

=========================  ============  ====================================================
column                     dtype         meaning
=========================  ============  ====================================================
request_id                 str           unique; from the file, else the 0-based row number
arrival_s                  float64       seconds since the first request (0 in offline batches)
prompt_tokens              int64         prompt (prefill) length, at least 1
output_tokens              Int64         generated tokens, at least 1; <NA> when unknown
predicted_output_tokens    Int64         prediction made before the request runs; <NA> if none
model                      str           model the request asks for; "" means any model
priority                   int64         lower is more urgent (vLLM's convention); default 0
ttft_target_s              float64       time-to-first-token target; NaN when none
tbt_target_s               float64       time-between-tokens target; NaN when none
e2e_target_s               float64       end-to-end latency target; NaN when none
hash_ids                   object        tuple of prefix-cache block ids (only if the source has them)
=========================  ============  ====================================================

Formats are recognised by their column names (whatever the container: CSV, JSON lines or
Parquet); `load_trace(..., format=...)` overrides the detection. Absolute timestamps are
read as UTC when they carry no zone; only differences between them matter.

Every bad cell is reported with the file, the line (the row for Parquet) and the column
as the file names it. Nothing is dropped silently: rows that the source marks as failed
requests (BurstGPT rows with zero response tokens) are left out of the table and listed in
`Trace.excluded` with their line and reason.
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from optimizer import spreadsheet
from optimizer.errors import TraceError
from optimizer.files import atomic_output

#: Columns of the normalized request table, in order (hash_ids only when present).
COLUMNS = (
    "request_id",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "predicted_output_tokens",
    "model",
    "priority",
    "ttft_target_s",
    "tbt_target_s",
    "e2e_target_s",
)
TARGET_COLUMNS = ("ttft_target_s", "tbt_target_s", "e2e_target_s")


@dataclass(frozen=True)
class Trace:
    """A loaded trace: the normalized request table and what loading it noticed."""

    requests: pd.DataFrame
    path: str
    format: str
    #: Source rows left out of `requests`, with columns ``line`` and ``reason``.
    excluded: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"line": pd.Series(dtype="int64"), "reason": pd.Series(dtype="str")})
    )
    #: Things the user should know about how the file was read (one sentence each).
    notes: tuple[str, ...] = ()

    @property
    def num_requests(self) -> int:
        return len(self.requests)

    @property
    def is_offline_batch(self) -> bool:
        """True when every request is available at time 0."""
        return bool((self.requests["arrival_s"] == 0).all())


# --------------------------------------------------------------------------------------
# Reading cells with located errors


@dataclass
class _Rows:
    """Raw rows of one file and the means to report an error at one of them."""

    raw: pd.DataFrame
    path: str
    lines: np.ndarray  # 1-based line (or row, for Parquet) of each raw row
    unit: str = "line"

    def __len__(self) -> int:
        return len(self.raw)

    def error(self, message: str, row: int | None = None, column: str | None = None) -> TraceError:
        line = None if row is None else int(self.lines[row])
        return TraceError(message, path=self.path, line=line, field=column, unit=self.unit)

    def has(self, column: str) -> bool:
        return column in self.raw.columns

    def numbers(self, column: str, *, optional: bool = False) -> np.ndarray:
        """The column as floats (NaN where empty and `optional`); errors name the cell."""
        cells = self.raw[column]
        if not is_numeric_dtype(cells) or is_bool_dtype(cells):
            # Slow path, taken only when some cell is not a plain number: find which.
            text = cells.astype(object).where(cells.notna(), "").astype(str).str.strip()
            empty = (text == "").to_numpy()
            parsed = pd.to_numeric(text.where(~empty, None), errors="coerce")
            bad = parsed.isna().to_numpy() & ~empty
            if bad.any():
                row = int(np.argmax(bad))
                raise self.error(f"{text.iloc[row]!r} is not a number.", row, column)
            cells = parsed
        values = cells.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(values)
        if missing.any() and not optional:
            raise self.error("is empty; a value is required.", int(np.argmax(missing)), column)
        infinite = np.isinf(values)
        if infinite.any():
            raise self.error("is not a finite number.", int(np.argmax(infinite)), column)
        return values

    def tokens(self, column: str, *, minimum: int, optional: bool = False) -> np.ndarray | pd.api.extensions.ExtensionArray:
        """A token count column: whole numbers >= `minimum` (nullable Int64 if `optional`)."""
        values = self.numbers(column, optional=optional)
        known = ~np.isnan(values)
        fractional = known & (values != np.floor(values))
        if fractional.any():
            row = int(np.argmax(fractional))
            raise self.error(f"{values[row]:g} is not a whole number of tokens.", row, column)
        too_small = known & (values < minimum)
        if too_small.any():
            row = int(np.argmax(too_small))
            what = "is negative" if values[row] < 0 else f"is {values[row]:g}"
            raise self.error(f"{what}; a token count here must be at least {minimum}.", row, column)
        if optional:
            return pd.arrays.IntegerArray(np.where(known, values, 0).astype(np.int64), mask=~known)
        return values.astype(np.int64)

    def seconds(self, column: str, *, scale: float = 1.0) -> np.ndarray:
        """A relative time column in units of `scale` seconds, must be >= 0."""
        values = self.numbers(column) * scale
        negative = values < 0
        if negative.any():
            raise self.error("is negative; times must be at least 0.", int(np.argmax(negative)), column)
        return values

    def timestamps_s(self, column: str) -> np.ndarray:
        """An absolute ISO-8601 timestamp column as seconds since its earliest timestamp."""
        text = self.raw[column].astype(object).where(self.raw[column].notna(), "").astype(str).str.strip()
        empty = (text == "").to_numpy()
        if empty.any():
            raise self.error("is empty; a timestamp is required.", int(np.argmax(empty)), column)
        try:
            stamps = pd.to_datetime(text, format="ISO8601", utc=True)
        except (ValueError, OverflowError):
            stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
            bad = stamps.isna().to_numpy()
            row = int(np.argmax(bad)) if bad.any() else 0
            raise self.error(f"{text.iloc[row]!r} is not a timestamp (expected e.g. 2023-11-16 18:17:03.9799600).", row, column) from None
        # Subtract in integer nanoseconds: epoch seconds as floats would lose the 7th digit.
        nanoseconds = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return (nanoseconds - nanoseconds.min()) / 1e9

    def text(self, column: str, *, default: str = "") -> pd.Series:
        cells = self.raw[column]
        return cells.astype(object).where(cells.notna(), default).astype(str).str.strip().reset_index(drop=True)

    def ids(self, column: str) -> pd.Series:
        ids = self.text(column)
        empty = (ids == "").to_numpy()
        if empty.any():
            raise self.error("is empty; every request needs an id.", int(np.argmax(empty)), column)
        return ids

    def hash_ids(self, column: str) -> pd.Series:
        """Prefix-cache block ids: a list (JSON, Parquet) or space-separated integers (CSV)."""
        parsed = []
        for row, cell in enumerate(self.raw[column].tolist()):
            try:
                if isinstance(cell, str):
                    items = json.loads(cell) if cell.lstrip().startswith("[") else cell.split()
                elif cell is None or (isinstance(cell, float) and np.isnan(cell)):
                    items = []
                else:
                    items = list(cell)
                parsed.append(tuple(int(item) for item in items))
            except (TypeError, ValueError):
                raise self.error(f"{cell!r} is not a list of integer block ids.", row, column) from None
        return pd.Series(parsed, dtype=object)


# --------------------------------------------------------------------------------------
# The formats


@dataclass(frozen=True)
class TraceFormat:
    """One trace format: the columns that identify it and how its rows become requests."""

    name: str
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    #: Columns read as text so ids and timestamps keep their exact spelling.
    text_columns: tuple[str, ...]
    convert: Callable[[_Rows, "_Options"], "_Converted"]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


@dataclass(frozen=True)
class _Options:
    arrival_rate: float | None
    seed: int


@dataclass
class _Converted:
    columns: dict[str, object]
    keep: np.ndarray | None = None  # boolean mask of raw rows that are requests
    excluded_reason: str = ""
    notes: list[str] = field(default_factory=list)


def _relative(times_s: np.ndarray) -> np.ndarray:
    """Seconds since the first request."""
    return times_s - times_s.min() if len(times_s) else times_s


def _row_ids(rows: _Rows) -> pd.Series:
    # Arrow turns a million integers into strings ten times faster than numpy does.
    return pd.Series(pa.array(np.arange(len(rows))).cast(pa.string()).to_pandas(types_mapper=pd.ArrowDtype), dtype="str")


def _native(rows: _Rows, options: _Options) -> _Converted:
    columns: dict[str, object] = {
        "request_id": spreadsheet.restore(rows.ids("request_id")),
        "arrival_s": rows.seconds("arrival_s"),
        "prompt_tokens": rows.tokens("prompt_tokens", minimum=1),
    }
    for name in ("output_tokens", "predicted_output_tokens"):
        if rows.has(name):
            columns[name] = rows.tokens(name, minimum=1, optional=True)
    if rows.has("model"):
        columns["model"] = rows.text("model")
    if rows.has("priority"):
        priority = rows.numbers("priority", optional=True)
        fractional = ~np.isnan(priority) & (priority != np.floor(priority))
        if fractional.any():
            raise rows.error("is not a whole number.", int(np.argmax(fractional)), "priority")
        columns["priority"] = np.nan_to_num(priority, nan=0.0).astype(np.int64)
    for name in TARGET_COLUMNS:
        if rows.has(name):
            target = rows.numbers(name, optional=True)
            not_positive = target <= 0  # NaN compares False: empty cells mean "no target"
            if not_positive.any():
                raise rows.error("must be greater than 0 (leave it empty for no target).", int(np.argmax(not_positive)), name)
            columns[name] = target
    if rows.has("hash_ids"):
        columns["hash_ids"] = rows.hash_ids("hash_ids")
    return _Converted(columns)


def _azure(rows: _Rows, options: _Options) -> _Converted:
    return _Converted(
        {
            "request_id": _row_ids(rows),
            "arrival_s": rows.timestamps_s("TIMESTAMP"),
            "prompt_tokens": rows.tokens("ContextTokens", minimum=1),
            "output_tokens": rows.tokens("GeneratedTokens", minimum=1),
        }
    )


def _mooncake(rows: _Rows, options: _Options) -> _Converted:
    columns: dict[str, object] = {
        "request_id": _row_ids(rows),
        "arrival_s": _relative(rows.seconds("timestamp", scale=1e-3)),
        "prompt_tokens": rows.tokens("input_length", minimum=1),
        "output_tokens": rows.tokens("output_length", minimum=1),
    }
    if rows.has("hash_ids"):
        columns["hash_ids"] = rows.hash_ids("hash_ids")
    return _Converted(columns)


def _vidur(rows: _Rows, options: _Options) -> _Converted:
    return _Converted(
        {
            "request_id": _row_ids(rows),
            "arrival_s": _relative(rows.seconds("arrived_at")),
            "prompt_tokens": rows.tokens("num_prefill_tokens", minimum=1),
            "output_tokens": rows.tokens("num_decode_tokens", minimum=1),
        }
    )


def _splitwise(rows: _Rows, options: _Options) -> _Converted:
    batch = rows.tokens("batch_size", minimum=1)
    columns: dict[str, object] = {
        "request_id": rows.ids("request_id"),
        "arrival_s": _relative(rows.seconds("arrival_timestamp")),
        "prompt_tokens": rows.tokens("prompt_size", minimum=1),
        "output_tokens": rows.tokens("token_size", minimum=1),
    }
    notes = []
    if (batch > 1).any():
        # A row with batch_size k stands for k identical requests arriving together.
        columns = {name: np.repeat(np.asarray(values), batch) for name, values in columns.items()}
        copy = np.concatenate([np.arange(k) for k in batch])
        columns["request_id"] = pd.Series(columns["request_id"]).astype(str) + "#" + copy.astype(str)
        notes.append(
            f"{int((batch > 1).sum())} rows with batch_size > 1 became {int(batch[batch > 1].sum())} "
            "requests with ids '<request_id>#<k>'."
        )
    return _Converted(columns, notes=notes)


def _burstgpt(rows: _Rows, options: _Options) -> _Converted:
    response = rows.tokens("Response tokens", minimum=0)
    columns: dict[str, object] = {
        "request_id": _row_ids(rows),
        "arrival_s": rows.seconds("Timestamp"),
        "prompt_tokens": rows.tokens("Request tokens", minimum=1),
        "output_tokens": response,
    }
    if rows.has("Model"):
        columns["model"] = rows.text("Model")
    # BurstGPT logs failed requests with zero response tokens: they are not work to plan.
    keep = response > 0
    columns["arrival_s"] = columns["arrival_s"] - columns["arrival_s"][keep].min() if keep.any() else columns["arrival_s"]
    return _Converted(columns, keep=keep, excluded_reason="failed request (zero response tokens)")


def _untimed_arrivals(n: int, options: _Options) -> tuple[np.ndarray, str]:
    """Arrivals for a format without times: an offline batch, or seeded Poisson arrivals."""
    if options.arrival_rate is None:
        return np.zeros(n), "No arrival times in this format: loaded as an offline batch (all arrivals at 0)."
    # Poisson arrivals: exponential gaps with mean 1/rate, the first request at 0.
    gaps = np.random.default_rng(options.seed).exponential(1.0 / options.arrival_rate, size=max(n - 1, 0))
    arrival_s = np.concatenate([[0.0], np.cumsum(gaps)])[:n]
    return arrival_s, f"No arrival times in this format: drew Poisson arrivals at {options.arrival_rate:g} req/s (seed {options.seed})."


#: Llama-2 tokens per English word, for text without token counts (`estimate_tokens`).
TOKENS_PER_WORD = 1.3
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: not model output


def estimate_tokens(text: pd.Series) -> np.ndarray:
    """Estimated Llama-2 (SentencePiece) token counts of text, for data sets without them.

        tokens = digits + ceil(1.3 x words) + symbols + newlines

    Llama's tokenizer splits numbers into single digits and most punctuation into tokens
    of their own; 1.3 tokens per word (runs of letters) is the usual English rate. An
    estimate, not a tokenizer: no tokenizer model ships with this tool.
    """
    digits = text.str.count(r"\d").to_numpy()
    words = text.str.count(r"[^\W\d_]+").to_numpy()
    symbols = text.str.count(r"[^\w\s]").to_numpy()
    newlines = text.str.count("\n").to_numpy()
    return (digits + np.ceil(TOKENS_PER_WORD * words) + symbols + newlines).astype(np.int64)


def _gsm8k(rows: _Rows, options: _Options) -> _Converted:
    question, answer = rows.text("question"), rows.text("answer")
    for column, cells in (("question", question), ("answer", answer)):
        empty = (cells == "").to_numpy()
        if empty.any():
            raise rows.error("is empty; the token estimate needs the text.", int(np.argmax(empty)), column)
    arrival_s, arrivals = _untimed_arrivals(len(rows), options)
    return _Converted(
        {
            "request_id": "gsm8k-" + _row_ids(rows),
            "arrival_s": arrival_s,
            "prompt_tokens": np.maximum(estimate_tokens(question) + 1, 1),  # + the BOS token
            "output_tokens": np.maximum(estimate_tokens(answer.str.replace(_CALCULATOR, "", regex=True)), 1),
        },
        notes=[
            "GSM8K has no token counts: estimated as digits + 1.3 x words + symbols + newlines (Llama-2 tokenizer "
            "conventions); prompt = the question (+1 BOS), output = the reference answer without its <<calculator>> notes.",
            arrivals,
        ],
    )


def _lengths(rows: _Rows, options: _Options) -> _Converted:
    n = len(rows)
    arrival_s, note = _untimed_arrivals(n, options)
    notes = [note]
    return _Converted(
        {
            "request_id": _row_ids(rows),
            "arrival_s": arrival_s,
            "prompt_tokens": rows.tokens("num_prefill_tokens", minimum=1),
            "output_tokens": rows.tokens("num_decode_tokens", minimum=1),
        },
        notes=notes,
    )


FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat(
            "native",
            "this tool's own columns (CSV or Parquet)",
            ("request_id", "arrival_s", "prompt_tokens"),
            ("output_tokens", "predicted_output_tokens", "model", "priority", *TARGET_COLUMNS, "hash_ids"),
            ("request_id", "model", "hash_ids"),
            _native,
        ),
        TraceFormat(
            "azure",
            "Azure LLM inference trace 2023/2024",
            ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
            (),
            ("TIMESTAMP",),
            _azure,
        ),
        TraceFormat(
            "mooncake",
            "Mooncake JSON lines (timestamp in ms)",
            ("timestamp", "input_length", "output_length"),
            ("hash_ids",),
            ("hash_ids",),
            _mooncake,
        ),
        TraceFormat(
            "vidur",
            "Vidur request trace",
            ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
            (),
            (),
            _vidur,
        ),
        TraceFormat(
            "splitwise",
            "Splitwise simulator trace",
            ("request_id", "request_type", "application_id", "arrival_timestamp", "batch_size", "prompt_size", "token_size"),
            (),
            ("request_id",),
            _splitwise,
        ),
        TraceFormat(
            "burstgpt",
            "BurstGPT log",
            ("Timestamp", "Request tokens", "Response tokens"),
            ("Model", "Total tokens", "Log Type"),
            ("Model", "Log Type"),
            _burstgpt,
        ),
        TraceFormat(
            "gsm8k",
            "GSM8K questions and answers (JSON lines; token counts estimated, offline batch or --arrival-rate)",
            ("question", "answer"),
            (),
            ("question", "answer"),
            _gsm8k,
        ),
        TraceFormat(
            "lengths",
            "length-only table (offline batch, or Poisson arrivals with --arrival-rate)",
            ("num_prefill_tokens", "num_decode_tokens"),
            (),
            (),
            _lengths,
        ),
    )
}


def _detect(columns: list[str], path: str, forced: str | None) -> TraceFormat:
    """The format whose columns the header has; errors name missing or misspelt columns."""
    present = set(columns)
    if forced is not None:
        if forced not in FORMATS:
            raise TraceError(f"unknown format {forced!r}; choose one of {', '.join(FORMATS)}.", path=path)
        candidates = [FORMATS[forced]]
    else:
        candidates = list(FORMATS.values())
    complete = [f for f in candidates if present.issuperset(f.required)]
    if complete:
        # A Vidur file also has every column of a length-only table: the more specific wins.
        fmt = max(complete, key=lambda f: len(f.required))
    else:
        fmt = max(candidates, key=lambda f: len(present.intersection(f.required)) / len(f.required))
        if forced is None and not present.intersection(fmt.required):
            described = "; ".join(f"{f.name} ({', '.join(f.required)})" for f in FORMATS.values())
            raise TraceError(
                f"unknown trace format: the columns ({', '.join(columns)}) match none of: {described}.",
                path=path,
                line=1,
            )
        missing = [c for c in fmt.required if c not in present]
        raise TraceError(
            f"missing column for the {fmt.name} format{_did_you_mean(missing[0], present)}.",
            path=path,
            line=1,
            field=missing[0],
        )
    # A misspelt optional column would otherwise be ignored and its data silently lost.
    known = set(fmt.columns)
    for column in columns:
        if column not in known:
            close = difflib.get_close_matches(column, [c for c in fmt.columns if c not in present], n=1, cutoff=0.8)
            if close:
                raise TraceError(
                    f"unknown column for the {fmt.name} format; did you mean {close[0]!r}?",
                    path=path,
                    line=1,
                    field=column,
                )
    return fmt


def _did_you_mean(column: str, present: set[str]) -> str:
    close = difflib.get_close_matches(column, sorted(present), n=1, cutoff=0.6)
    return f" (found {close[0]!r}; misspelt?)" if close else f" (found: {', '.join(sorted(present))})"


# --------------------------------------------------------------------------------------
# Containers: CSV, JSON lines, Parquet


def _container(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def _read_csv(path: Path, forced: str | None) -> tuple[_Rows, TraceFormat]:
    try:
        header = [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
        fmt = _detect(header, str(path), forced)
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
    rows = _Rows(raw.iloc[:end], str(path), np.arange(end) + 2)
    if blank[:end].any():
        raise rows.error("is blank; every line after the header must be a request.", int(np.argmax(blank[:end])))
    return rows, fmt


def _blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty (none when a column is numeric: it has no empty cells)."""
    if raw.empty or any(is_numeric_dtype(raw[c]) for c in raw.columns):
        return np.zeros(len(raw), dtype=bool)
    return np.logical_and.reduce([(raw[c].astype(str).str.strip() == "").to_numpy() for c in raw.columns])


def _read_jsonl(path: Path, forced: str | None) -> tuple[_Rows, TraceFormat]:
    records, lines = [], []
    with open(path, encoding="utf-8") as f:
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
    fmt = _detect(list(raw.columns), str(path), forced)
    return _Rows(raw, str(path), np.asarray(lines)), fmt


def _read_parquet(path: Path, forced: str | None) -> tuple[_Rows, TraceFormat]:
    try:
        raw = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise TraceError(f"is not a readable Parquet file ({type(exc).__name__}: {exc}).", path=path) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    fmt = _detect(list(raw.columns), str(path), forced)
    return _Rows(raw.reset_index(drop=True), str(path), np.arange(len(raw)) + 1, unit="row"), fmt


# --------------------------------------------------------------------------------------
# Public API


def load_trace(
    path: str | Path,
    *,
    format: str | None = None,
    arrival_rate: float | None = None,
    seed: int = 0,
    model: str | None = None,
) -> Trace:
    """Load a trace file into the normalized request table.

    Args:
        path: a CSV, JSON-lines or Parquet file in one of `FORMATS`.
        format: force a format instead of detecting it from the columns.
        arrival_rate: for length-only tables, draw Poisson arrivals at this many requests
            per second (seeded by `seed`); without it they form an offline batch.
        seed: seed of every random draw made while loading.
        model: serve every request with this model, replacing what the trace says.

    Raises:
        TraceError: naming the file, line and column of the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError("no such file." if not path.exists() else "is not a file.", path=path)
    if arrival_rate is not None and not arrival_rate > 0:
        raise TraceError(f"the arrival rate must be greater than 0 requests/s, got {arrival_rate:g}.", path=path)
    container = _container(path)
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[container]
    rows, fmt = reader(path, format)
    if len(rows) == 0:
        raise TraceError("has a header but no requests.", path=path)
    if arrival_rate is not None and fmt.name != "lengths":
        raise TraceError(
            f"an arrival rate applies only to length-only tables; this {fmt.name} trace has its own arrival times.",
            path=path,
        )
    converted = fmt.convert(rows, _Options(arrival_rate, seed))
    requests, excluded = _assemble(rows, converted)
    if requests.empty:
        raise TraceError(f"has no requests left: each of its {len(excluded)} rows is a {converted.excluded_reason}.", path=path)
    if model is not None:
        requests["model"] = model
    _reject_duplicate_ids(requests, rows, converted, fmt)
    notes = list(converted.notes)
    if len(excluded):
        first = ", ".join(map(str, excluded["line"].head(5)))
        notes.append(
            f"Left out {len(excluded)} rows, each a {converted.excluded_reason} "
            f"({rows.unit}s {first}{', ...' if len(excluded) > 5 else ''})."
        )
    return Trace(requests, str(path), fmt.name, excluded, tuple(notes))


def _assemble(rows: _Rows, converted: _Converted) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    if "hash_ids" in columns:
        table["hash_ids"] = pd.Series(columns["hash_ids"], dtype=object).reset_index(drop=True)
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


def _reject_duplicate_ids(requests: pd.DataFrame, rows: _Rows, converted: _Converted, fmt: TraceFormat) -> None:
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


def write_trace(requests: pd.DataFrame, path: str | Path) -> None:
    """Write a normalized request table in the native format (CSV, or Parquet by suffix).

    Empty optional columns are left out; text cells are protected against spreadsheet
    formulas in CSV (see `optimizer.spreadsheet`), and reading the file back restores them.
    """
    path = Path(path)
    keep = [c for c in COLUMNS if c in ("request_id", "arrival_s", "prompt_tokens") or _carries_data(requests[c])]
    table = requests[keep + (["hash_ids"] if "hash_ids" in requests else [])].copy()
    with atomic_output(path) as tmp:
        if path.suffix == ".parquet":
            if "hash_ids" in table:
                table["hash_ids"] = table["hash_ids"].map(list)
            table.to_parquet(tmp, index=False)
        else:
            for column in ("request_id", "model"):
                if column in table:
                    table[column] = spreadsheet.neutralize(table[column])
            if "hash_ids" in table:
                table["hash_ids"] = table["hash_ids"].map(lambda ids: " ".join(map(str, ids)))
            table.to_csv(tmp, index=False, lineterminator="\n")


def _carries_data(column: pd.Series) -> bool:
    if column.name == "model":
        return bool((column != "").any())
    if column.name == "priority":
        return bool((column != 0).any())
    return bool(column.notna().any())


def trace_stats(trace: Trace) -> dict[str, object]:
    """Summary figures of a trace: counts, arrival rate and token-length percentiles."""
    requests = trace.requests
    duration_s = float(requests["arrival_s"].max() - requests["arrival_s"].min())

    def lengths(column: str) -> dict[str, float] | None:
        known = requests[column].dropna().to_numpy(dtype=float)
        if not len(known):
            return None
        p50, p90, p99 = np.percentile(known, [50, 90, 99])
        return {
            "known": int(len(known)),
            "mean": round(float(known.mean()), 1),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(known.max()),
            "total": int(known.sum()),
        }

    return {
        "file": trace.path,
        "format": trace.format,
        "num_requests": trace.num_requests,
        "num_excluded": int(len(trace.excluded)),
        "offline_batch": trace.is_offline_batch,
        "duration_s": round(duration_s, 3),
        "rate_per_s": round(trace.num_requests / duration_s, 3) if duration_s > 0 else None,
        "models": {name or "(any)": int(count) for name, count in requests["model"].value_counts(sort=False).sort_index().items()},
        "prompt_tokens": lengths("prompt_tokens"),
        "output_tokens": lengths("output_tokens"),
        "predicted_output_tokens": lengths("predicted_output_tokens"),
        "notes": list(trace.notes),
    }
