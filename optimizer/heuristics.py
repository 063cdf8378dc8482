"""Greedy assignment rules: round-robin and LPT (longest processing time first).

Both take per-request costs and an eligibility rule (a request may run only on replicas
that serve its model) and return, for each request, the index of its replica.

LPT takes requests from the costliest down and gives each to the eligible replica with
the least load so far. On identical replicas it is within 4/3 - 1/(3m) of the optimal
makespan, and within a fraction of a percent when each replica gets many requests.
"""

from __future__ import annotations

import heapq

import numpy as np


def eligibility_groups(request_models: np.ndarray, replica_models: list[str]) -> dict[str, np.ndarray]:
    """For each model asked for, the indices of the replicas that may run it ("" = any)."""
    groups = {}
    for model in np.unique(request_models):
        if model == "":
            groups[model] = np.arange(len(replica_models))
        else:
            groups[model] = np.flatnonzero(np.asarray(replica_models) == model)
    return groups


def round_robin(request_models: np.ndarray, replica_models: list[str]) -> np.ndarray:
    """Request i (in the given order) goes to the next eligible replica in turn."""
    assignment = np.empty(len(request_models), dtype=np.int64)
    for model, replicas in eligibility_groups(request_models, replica_models).items():
        members = np.flatnonzero(request_models == model)
        assignment[members] = replicas[np.arange(len(members)) % len(replicas)]
    return assignment


def lpt(costs: np.ndarray, request_models: np.ndarray, replica_models: list[str]) -> np.ndarray:
    """Longest-first to the least-loaded eligible replica; ties go to the lowest index."""
    groups = eligibility_groups(request_models, replica_models)
    load = np.zeros(len(replica_models))
    # One heap of (load, replica) per eligibility group; entries go stale when another
    # group raises a shared replica's load, and are refreshed when they surface.
    heaps = {model: [(0.0, int(r)) for r in replicas] for model, replicas in groups.items()}
    for heap in heaps.values():
        heapq.heapify(heap)
    assignment = np.empty(len(costs), dtype=np.int64)
    # Stable sort on -cost keeps file order among equal costs, so the result is deterministic.
    for i in np.argsort(-costs, kind="stable"):
        heap = heaps[request_models[i]]
        while True:
            seen_load, r = heap[0]
            if seen_load == load[r]:
                break
            heapq.heapreplace(heap, (load[r], r))
        load[r] += costs[i]
        heapq.heapreplace(heap, (load[r], r))
        assignment[i] = r
    return assignment
