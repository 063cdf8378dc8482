"""Request logs with arrival times: the native format, Azure, Mooncake, Vidur, Splitwise, BurstGPT.

Each function turns one format's raw rows into the columns of the request table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.common import spreadsheet
from optimizer.traces.prefixes import check_hash_ids, parse_groups
from optimizer.traces.rows import Converted, Options, Rows, relative, row_ids
from optimizer.traces.table import TARGET_COLUMNS


def native(rows: Rows, options: Options) -> Converted:
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
    _prefixes(rows, columns, "hash_ids", "prompt_tokens")
    if rows.has("prefix_group"):
        located = lambda message, row, column: rows.error(message, row, column)  # noqa: E731
        tokens = rows.text("prefix_tokens") if rows.has("prefix_tokens") else None
        columns["prefix_group"], columns["prefix_tokens"] = parse_groups(rows.text("prefix_group"), tokens, columns["prompt_tokens"], located)
    elif rows.has("prefix_tokens") and (rows.text("prefix_tokens") != "").any():
        raise rows.error("is set but there is no prefix_group column; a prefix needs a group.", int(np.argmax((rows.text("prefix_tokens") != "").to_numpy())), "prefix_tokens")
    return Converted(columns)


def _prefixes(rows: Rows, columns: dict, hash_column: str, prompt_column: str) -> None:
    """hash_ids, checked against the prompt length (`optimizer.traces.prefixes`)."""
    if rows.has(hash_column):
        columns["hash_ids"] = rows.hash_ids(hash_column)
        check_hash_ids(columns["hash_ids"], columns[prompt_column], lambda message, row: rows.error(message, row, hash_column))


def azure(rows: Rows, options: Options) -> Converted:
    return Converted(
        {
            "request_id": row_ids(rows),
            "arrival_s": rows.timestamps_s("TIMESTAMP"),
            "prompt_tokens": rows.tokens("ContextTokens", minimum=1),
            "output_tokens": rows.tokens("GeneratedTokens", minimum=1),
        }
    )


def mooncake(rows: Rows, options: Options) -> Converted:
    columns: dict[str, object] = {
        "request_id": row_ids(rows),
        "arrival_s": relative(rows.seconds("timestamp", scale=1e-3)),
        "prompt_tokens": rows.tokens("input_length", minimum=1),
        "output_tokens": rows.tokens("output_length", minimum=1),
    }
    _prefixes(rows, columns, "hash_ids", "prompt_tokens")
    return Converted(columns)


def vidur(rows: Rows, options: Options) -> Converted:
    return Converted(
        {
            "request_id": row_ids(rows),
            "arrival_s": relative(rows.seconds("arrived_at")),
            "prompt_tokens": rows.tokens("num_prefill_tokens", minimum=1),
            "output_tokens": rows.tokens("num_decode_tokens", minimum=1),
        }
    )


def splitwise(rows: Rows, options: Options) -> Converted:
    batch = rows.tokens("batch_size", minimum=1)
    columns: dict[str, object] = {
        "request_id": rows.ids("request_id"),
        "arrival_s": relative(rows.seconds("arrival_timestamp")),
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
    return Converted(columns, notes=notes)


def burstgpt(rows: Rows, options: Options) -> Converted:
    response = rows.tokens("Response tokens", minimum=0)
    columns: dict[str, object] = {
        "request_id": row_ids(rows),
        "arrival_s": rows.seconds("Timestamp"),
        "prompt_tokens": rows.tokens("Request tokens", minimum=1),
        "output_tokens": response,
    }
    if rows.has("Model"):
        columns["model"] = rows.text("Model")
    # BurstGPT logs failed requests with zero response tokens: they are not work to plan.
    keep = response > 0
    columns["arrival_s"] = columns["arrival_s"] - columns["arrival_s"][keep].min() if keep.any() else columns["arrival_s"]
    return Converted(columns, keep=keep, excluded_reason="failed request (zero response tokens)")
