"""Writing a result table as CSV (every column, 6 decimals) or Markdown (a `.md` path)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from optimizer.common.files import atomic_output


def write_table(table: pd.DataFrame, path, to_markdown: Callable[[pd.DataFrame], str]) -> None:
    """CSV (full precision) or, for a `.md` path, `to_markdown(table)`; atomically."""
    with atomic_output(path) as tmp:
        if str(path).lower().endswith(".md"):
            tmp.write_text(to_markdown(table))
        else:
            table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")
