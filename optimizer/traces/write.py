"""Writing a request table in the native format (CSV or Parquet).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from optimizer.common import spreadsheet
from optimizer.common.files import atomic_output
from optimizer.traces.table import COLUMNS


def write_trace(requests: pd.DataFrame, path: str | Path) -> None:
    """Write a normalized request table in the native format (CSV, or Parquet by suffix).

    Empty optional columns are left out; text cells are protected against spreadsheet
    formulas in CSV (see `optimizer.common.spreadsheet`), and reading the file back restores them.
    """
    path = Path(path)
    keep = [c for c in COLUMNS if c in ("request_id", "arrival_s", "prompt_tokens") or _carries_data(requests[c])]
    extra = [c for c in ("hash_ids", "prefix_group", "prefix_tokens") if c in requests]
    table = requests[keep + extra].copy()
    with atomic_output(path) as tmp:
        if path.suffix == ".parquet":
            if "hash_ids" in table:
                table["hash_ids"] = table["hash_ids"].map(list)
            if "prefix_tokens" in table:
                table["prefix_tokens"] = table["prefix_tokens"].map(lambda ends: " ".join(map(str, ends)))
            table.to_parquet(tmp, index=False)
        else:
            for column in ("request_id", "model"):
                if column in table:
                    table[column] = spreadsheet.neutralize(table[column])
            for column in ("hash_ids", "prefix_tokens"):
                if column in table:
                    table[column] = table[column].map(lambda ids: " ".join(map(str, ids)))
            table.to_csv(tmp, index=False, lineterminator="\n")


def _carries_data(column: pd.Series) -> bool:
    if column.name == "model":
        return bool((column != "").any())
    if column.name == "priority":
        return bool((column != 0).any())
    return bool(column.notna().any())
