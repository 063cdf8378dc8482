"""Plans: which replica runs each request and in what order, their CSV form, and the validator.

A plan is a table with one row per request:

================  =======  ==========================================================
column            dtype    meaning
================  =======  ==========================================================
request_id        str      a request of the trace
replica           str      the replica that runs it
order             int64    its place in that replica's order, 0, 1, 2, ...
planned_start_s   float64  planned start (seconds from the first arrival); NaN if none
planned_end_s     float64  planned finish; NaN if none
================  =======  ==========================================================

The CSV form has exactly these columns, times with microsecond resolution, and text cells
protected against spreadsheet formulas; writing, reading and writing again gives the same
bytes. `plan_violations` checks a plan against its trace and cluster without using any
code that produces plans, so it can judge every producer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common import spreadsheet
from optimizer.common.errors import PlanError
from optimizer.common.files import atomic_output
from optimizer.fleet.cluster import Cluster

PLAN_COLUMNS = ("request_id", "replica", "order", "planned_start_s", "planned_end_s")
_REQUIRED = ("request_id", "replica", "order")
_TIME_FORMAT = "%.6f"
# Small slack for times that went through the CSV's microsecond rounding.
_TIME_TOLERANCE_S = 1e-6


def empty_times(plan: pd.DataFrame) -> bool:
    """True when the plan carries no planned start and end times."""
    return bool(plan["planned_start_s"].isna().all() and plan["planned_end_s"].isna().all())


def write_plan(plan: pd.DataFrame, path: str | Path) -> None:
    """Write a plan as CSV, atomically: on any error no file is left behind."""
    table = plan.loc[:, list(PLAN_COLUMNS)].copy()
    for column in ("request_id", "replica"):
        table[column] = spreadsheet.neutralize(table[column])
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format=_TIME_FORMAT)


def read_plan(path: str | Path) -> pd.DataFrame:
    """Read a plan CSV written by `write_plan` (or by hand, in the same columns).

    Row ``i`` of the returned table is line ``i + 2`` of the file.
    """
    path = Path(path)
    if not path.is_file():
        raise PlanError("no such file.", path=path)
    try:
        table = pd.read_csv(
            path,
            dtype={"request_id": str, "replica": str},
            keep_default_na=False,
            na_values={"planned_start_s": [""], "planned_end_s": [""]},
        )
    except pd.errors.EmptyDataError:
        raise PlanError("the file is empty.", path=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PlanError(f"is not a readable CSV file ({str(exc).strip()}).", path=path) from None
    table.columns = [str(c).strip() for c in table.columns]
    for column in _REQUIRED:
        if column not in table.columns:
            raise PlanError(f"missing column (the plan has: {', '.join(table.columns)}).", path=path, line=1, field=column)
    for column in ("planned_start_s", "planned_end_s"):
        if column not in table.columns:
            table[column] = np.nan
    table = table.loc[:, list(PLAN_COLUMNS)]
    for column in ("request_id", "replica"):
        table[column] = spreadsheet.restore(table[column])
    for column, kind in (("order", "integer"), ("planned_start_s", "number"), ("planned_end_s", "number")):
        cells = table[column]
        values = pd.to_numeric(cells, errors="coerce")
        # Times may be empty (no planned times); an order may not.
        empty = cells.isna() | (cells.astype(str).str.strip() == "")
        bad = values.isna() & (~empty if kind == "number" else True)
        if kind == "integer":
            bad |= values.notna() & (values != np.floor(values.fillna(0)))
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise PlanError(f"{str(cells.iloc[row])!r} is not a{'n' if kind == 'integer' else ''} {kind}.", path=path, line=row + 2, field=column)
        table[column] = values.astype(np.int64) if kind == "integer" else values.astype(float)
    return table


def plan_violations(
    plan: pd.DataFrame, requests: pd.DataFrame, cluster: Cluster, *, path: str | Path | None = None
) -> list[PlanError]:
    """Every rule the plan breaks, most fundamental first; empty when the plan is valid.

    Rules: each request of the trace appears exactly once, and no other request does; each
    replica is one of the cluster's; each replica serves the request's model; the orders
    on each replica are 0, 1, ..., k-1; planned times, where given, have start >= arrival,
    end >= start, and starts that follow the order.
    """
    problems: list[PlanError] = []

    def problem(message: str, row: int | None = None, field: str | None = None) -> None:
        line = None if row is None or path is None else row + 2
        problems.append(PlanError(message, path=path, line=line, field=field))

    ids = plan["request_id"].astype(str)
    duplicated = ids.duplicated(keep="first").to_numpy()
    for row in np.flatnonzero(duplicated)[:5]:
        problem(f"request {ids.iloc[row]!r} is planned more than once.", int(row), "request_id")
    # Position of each plan row's request in the trace (-1 if none): a hash join.
    position = pd.Index(requests["request_id"].astype(str)).get_indexer(ids)
    for row in np.flatnonzero(position < 0)[:5]:
        problem(f"request {ids.iloc[row]!r} is not in the trace.", int(row), "request_id")
    missing = np.bincount(position[position >= 0], minlength=len(requests)) == 0
    if missing.any():
        examples = ", ".join(repr(i) for i in requests["request_id"][missing].head(5))
        problem(f"{int(missing.sum())} requests of the trace are not planned (e.g. {examples}).")

    replica_index = pd.Index(cluster.names).get_indexer(plan["replica"].astype(str))
    for row in np.flatnonzero(replica_index < 0)[:5]:
        problem(f"replica {plan['replica'].iloc[row]!r} is not in the cluster ({cluster.describe()}).", int(row), "replica")

    known = (position >= 0) & (replica_index >= 0)
    wanted = requests["model"].to_numpy(dtype=object)[np.maximum(position, 0)]
    served = np.asarray([r.model for r in cluster.replicas], dtype=object)[np.maximum(replica_index, 0)]
    wrong_model = known & (wanted != "") & (wanted != served)
    for row in np.flatnonzero(wrong_model)[:5]:
        problem(f"request {ids.iloc[row]!r} needs model {wanted[row]!r} but replica {plan['replica'].iloc[row]!r} serves {served[row]!r}.", int(row), "replica")

    # Orders on each replica must be 0..k-1: sorted by (replica, order), each equals its rank.
    orders = plan["order"].to_numpy()
    by_replica = np.lexsort((orders, replica_index))
    group = replica_index[by_replica]
    first = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    rank = np.arange(len(group)) - np.repeat(first, np.diff(np.r_[first, len(group)]))
    bad_order = orders[by_replica] != rank
    for replica in pd.unique(plan["replica"].to_numpy()[by_replica][bad_order])[:5]:
        rows = np.flatnonzero(plan["replica"].to_numpy() == replica)
        problem(f"the orders on replica {replica!r} are not 0..{len(rows) - 1}, each once.", int(rows[0]), "order")

    if not empty_times(plan):
        arrival = np.where(position >= 0, requests["arrival_s"].to_numpy(dtype=float)[np.maximum(position, 0)], -np.inf)
        problems.extend(_time_violations(plan, arrival, by_replica, group, path))
    return problems


def _time_violations(
    plan: pd.DataFrame, arrival: np.ndarray, by_replica: np.ndarray, group: np.ndarray, path: str | Path | None
) -> list[PlanError]:
    problems = []

    def at(row: int, message: str, field: str) -> PlanError:
        return PlanError(message, path=path, line=None if path is None else row + 2, field=field)

    start = plan["planned_start_s"].to_numpy(dtype=float)
    end = plan["planned_end_s"].to_numpy(dtype=float)
    for column, values in (("planned_start_s", start), ("planned_end_s", end)):
        if np.isnan(values).any():
            problems.append(at(int(np.argmax(np.isnan(values))), "is empty while other rows have times.", column))
    early = start < arrival - _TIME_TOLERANCE_S
    if early.any():
        row = int(np.argmax(early))
        problems.append(at(row, f"starts at {start[row]:.6f} s, before the request arrives at {arrival[row]:.6f} s.", "planned_start_s"))
    backwards = end < start - _TIME_TOLERANCE_S
    if backwards.any():
        row = int(np.argmax(backwards))
        problems.append(at(row, f"ends at {end[row]:.6f} s, before it starts at {start[row]:.6f} s.", "planned_end_s"))
    # In (replica, order) sequence, starts never go back within a replica.
    step_back = (np.diff(start[by_replica]) < -_TIME_TOLERANCE_S) & (np.diff(group) == 0)
    if step_back.any():
        row = int(by_replica[np.argmax(step_back) + 1])
        problems.append(at(row, "starts before the request placed ahead of it on the same replica.", "planned_start_s"))
    return problems


def validate_plan(plan: pd.DataFrame, requests: pd.DataFrame, cluster: Cluster, *, path: str | Path | None = None) -> None:
    """Raise the first `PlanError` of `plan_violations`, saying how many there are."""
    problems = plan_violations(plan, requests, cluster, path=path)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            first.message += f" ({len(problems) - 1} more problems)"
        raise first
