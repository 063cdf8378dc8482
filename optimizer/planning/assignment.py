"""Assignments (replica of each request) from heuristics and from solver values."""

from __future__ import annotations

import numpy as np

from optimizer.fleet.estimates import Estimates
from optimizer.planning.heuristics import least_loaded, lpt, round_robin


def heuristic(name: str, work: np.ndarray, estimates: Estimates) -> np.ndarray:
    if name == "lpt":
        return lpt(work, estimates.kind_of_replica)
    if name == "least-loaded":
        return least_loaded(work, estimates.kind_of_replica, estimates.arrival_s)
    return round_robin(work, estimates.kind_of_replica)


def from_per_request(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Replica of each request: the x[j, r] that is 1."""
    chosen = np.where(x >= 0, values[np.maximum(x, 0)], -1.0)
    return np.argmax(chosen, axis=1)


def from_classes(values: np.ndarray, n: np.ndarray, classes, work: np.ndarray, estimates: Estimates) -> np.ndarray:
    """Replicas from class counts: members go to kinds by count, then each kind's requests
    are spread over its replicas (LPT offline, least-loaded in arrival order otherwise)."""
    counts = np.where(n >= 0, np.rint(values[np.maximum(n, 0)]), 0).astype(np.int64)
    kind = np.empty(len(classes.of_request), dtype=np.int64)
    order = np.argsort(classes.of_request, kind="stable")
    starts = np.r_[0, np.cumsum(classes.count)[:-1]]
    for c in range(len(classes.count)):
        members = order[starts[c] : starts[c] + classes.count[c]]
        kind[members] = np.repeat(np.arange(counts.shape[1]), counts[c])[: len(members)]
    assignment = np.empty(len(kind), dtype=np.int64)
    offline = bool(np.all(estimates.arrival_s == estimates.arrival_s[0]))
    for k, replicas in enumerate(estimates.replicas_of_kind):
        rows = np.flatnonzero(kind == k)
        if not len(rows):
            continue
        local_kinds = np.zeros(len(replicas), dtype=np.int64)
        own = work[rows, k][:, None]
        local = lpt(own, local_kinds) if offline else least_loaded(own, local_kinds, estimates.arrival_s[rows])
        assignment[rows] = replicas[local]
    return assignment
