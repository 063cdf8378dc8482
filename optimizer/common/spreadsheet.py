"""Protection of text cells in exported CSV files against spreadsheet formula injection.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage
return) as a formula, so a request id such as ``=HYPERLINK(...)`` in a trace would execute
when someone opens the exported plan. Export prefixes such cells with a single quote, which
spreadsheets show as text. Cells that already start with a quote get one more, so
`restore` can undo `neutralize` exactly and files round-trip byte for byte. `restore`
touches only what `neutralize` can have written (a quote followed by one of those
characters), so an id such as ``'a`` in a user's own file stays ``'a``.
"""

from __future__ import annotations

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralize(cells: pd.Series) -> pd.Series:
    """Return text cells with a leading quote added where a spreadsheet would run them."""
    text = cells.astype(str)
    risky = text.str.startswith(_FORMULA_START)
    return text.where(~risky, "'" + text)


def restore(cells: pd.Series) -> pd.Series:
    """Undo `neutralize`: drop the leading quote it adds, and nothing else."""
    text = cells.astype(str)
    quoted = text.str.startswith(tuple("'" + start for start in _FORMULA_START))
    return text.where(~quoted, text.str.slice(1))
