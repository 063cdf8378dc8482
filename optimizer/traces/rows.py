"""Reading cells of raw rows with errors located at the file, line and column.

Every format converts its raw rows (`Rows`) into request columns (`Converted`); the helpers
here are the pieces several formats share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from optimizer.common.errors import TraceError


#: Most tokens in one prompt or output: above every model's context window (10M tokens);
#: larger counts are corrupt and would overflow the planner's integer arithmetic.
MAX_TOKENS = 2**24
#: Longest span of arrivals in a trace: a year. Longer means a unit mix-up (milliseconds
#: read as seconds) or a corrupt timestamp (year 9999), not a workload to plan.
MAX_SPAN_S = 366 * 24 * 3600.0
#: Largest time value: seconds since 1970 up to the year 2286 (relative times are far smaller).
MAX_TIME_S = 1e10


@dataclass
class Rows:
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
        too_large = known & (values > MAX_TOKENS)
        if too_large.any():
            row = int(np.argmax(too_large))
            raise self.error(f"{values[row]:g} tokens is more than {MAX_TOKENS:,}, beyond any model's context window.", row, column)
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
        return _within_span(self, values, column)

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
        # Nanoseconds end in 2262; later stamps would wrap around silently.
        late = (stamps >= pd.Timestamp("2262-01-01", tz="UTC")).to_numpy()
        if late.any():
            row = int(np.argmax(late))
            raise self.error(f"{text.iloc[row]!r} is past the year 2261; check the timestamp.", row, column)
        # Subtract in integer nanoseconds: epoch seconds as floats would lose the 7th digit.
        nanoseconds = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return _within_span(self, (nanoseconds - nanoseconds.min()) / 1e9, column)

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
class Options:
    arrival_rate: float | None
    seed: int


@dataclass
class Converted:
    columns: dict[str, object]
    keep: np.ndarray | None = None  # boolean mask of raw rows that are requests
    excluded_reason: str = ""
    notes: list[str] = field(default_factory=list)


def _within_span(rows: Rows, times_s: np.ndarray, column: str) -> np.ndarray:
    """`times_s` unchanged, or an error naming the first time more than a year after the earliest."""
    late = (times_s - (times_s.min() if len(times_s) else 0.0) > MAX_SPAN_S) | (times_s > MAX_TIME_S)
    if late.any():
        row = int(np.argmax(late))
        raise rows.error(f"is {times_s[row]:,.6g} s, more than a year after the trace's first request or past the "
                         "year 2286; check the unit.", row, column)
    return times_s


def relative(times_s: np.ndarray) -> np.ndarray:
    """Seconds since the first request."""
    return times_s - times_s.min() if len(times_s) else times_s


def row_ids(rows: Rows) -> pd.Series:
    # Arrow turns a million integers into strings ten times faster than numpy does.
    return pd.Series(pa.array(np.arange(len(rows))).cast(pa.string()).to_pandas(types_mapper=pd.ArrowDtype), dtype="str")


def untimed_arrivals(n: int, options: Options) -> tuple[np.ndarray, str]:
    """Arrivals for a format without times: an offline batch, or seeded Poisson arrivals."""
    if options.arrival_rate is None:
        return np.zeros(n), "No arrival times in this format: loaded as an offline batch (all arrivals at 0)."
    # Poisson arrivals: exponential gaps with mean 1/rate, the first request at 0.
    gaps = np.random.default_rng(options.seed).exponential(1.0 / options.arrival_rate, size=max(n - 1, 0))
    arrival_s = np.concatenate([[0.0], np.cumsum(gaps)])[:n]
    return arrival_s, f"No arrival times in this format: drew Poisson arrivals at {options.arrival_rate:g} req/s (seed {options.seed})."
