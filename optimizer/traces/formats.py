"""The trace formats, and detecting which one a file is in from its column names.

Formats are recognised by their column names (whatever the container: CSV, JSON lines or
Parquet); `load_trace(..., format=...)` overrides the detection.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from optimizer.common.errors import TraceError
from optimizer.traces.batch import batch
from optimizer.traces.lengths import lengths
from optimizer.traces.logs import azure, burstgpt, mooncake, native, splitwise, vidur
from optimizer.traces.rows import Converted, Options, Rows
from optimizer.traces.table import TARGET_COLUMNS
from optimizer.traces.text import gsm8k


@dataclass(frozen=True)
class TraceFormat:
    """One trace format: the columns that identify it and how its rows become requests."""

    name: str
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    #: Columns read as text so ids and timestamps keep their exact spelling.
    text_columns: tuple[str, ...]
    convert: Callable[[Rows, Options], Converted]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat(
            "native",
            "this tool's own columns (CSV or Parquet)",
            ("request_id", "arrival_s", "prompt_tokens"),
            ("output_tokens", "predicted_output_tokens", "model", "priority", *TARGET_COLUMNS, "hash_ids", "prefix_group", "prefix_tokens"),
            ("request_id", "model", "hash_ids", "prefix_group", "prefix_tokens"),
            native,
        ),
        TraceFormat(
            "azure",
            "Azure LLM inference trace 2023/2024",
            ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
            (),
            ("TIMESTAMP",),
            azure,
        ),
        TraceFormat(
            "mooncake",
            "Mooncake JSON lines (timestamp in ms)",
            ("timestamp", "input_length", "output_length"),
            ("hash_ids",),
            ("hash_ids",),
            mooncake,
        ),
        TraceFormat(
            "vidur",
            "Vidur request trace",
            ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
            (),
            (),
            vidur,
        ),
        TraceFormat(
            "splitwise",
            "Splitwise simulator trace",
            ("request_id", "request_type", "application_id", "arrival_timestamp", "batch_size", "prompt_size", "token_size"),
            (),
            ("request_id",),
            splitwise,
        ),
        TraceFormat(
            "burstgpt",
            "BurstGPT log",
            ("Timestamp", "Request tokens", "Response tokens"),
            ("Model", "Total tokens", "Log Type"),
            ("Model", "Log Type"),
            burstgpt,
        ),
        TraceFormat(
            "gsm8k",
            "GSM8K questions and answers (JSON lines; token counts estimated, offline batch or --arrival-rate)",
            ("question", "answer"),
            (),
            ("question", "answer"),
            gsm8k,
        ),
        TraceFormat(
            "batch",
            "OpenAI batch file (JSON lines: custom_id, method, url, body; prompt tokens counted by --tokenizer or estimated)",
            ("custom_id", "body"),
            ("method", "url"),
            ("custom_id",),
            batch,
        ),
        TraceFormat(
            "lengths",
            "length-only table (offline batch, or Poisson arrivals with --arrival-rate)",
            ("num_prefill_tokens", "num_decode_tokens"),
            (),
            (),
            lengths,
        ),
    )
}


def detect(columns: list[str], path: str, forced: str | None) -> TraceFormat:
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
