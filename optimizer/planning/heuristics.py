"""Greedy assignment rules: round-robin, and LPT with earliest finish for mixed fleets.

Both take each request's work on each replica kind (`work[j, k]`, ``inf`` where kind k
cannot run request j) and the kind of each replica, and return the replica of each request.

LPT (longest processing time first) takes requests from the costliest down (by their work
on their fastest kind) and gives each to the replica where it would finish earliest, that
is the one minimising load + work. On identical replicas this is Graham's LPT: within
4/3 - 1/(3m) of the optimal makespan, and within a fraction of a percent when each
replica gets many requests. On mixed fleets it is the earliest-finish list rule for
unrelated machines.
"""

from __future__ import annotations

import heapq

import numpy as np


def round_robin(work: np.ndarray, kind_of_replica: np.ndarray) -> np.ndarray:
    """Request j (in the given order) goes to the next replica that can run it."""
    # Group requests by the kinds they may use (few distinct rows), not by replicas.
    groups, members = np.unique(np.isfinite(work), axis=0, return_inverse=True)
    assignment = np.empty(len(work), dtype=np.int64)
    for g, kinds in enumerate(groups):
        replicas = np.flatnonzero(kinds[kind_of_replica])
        rows = np.flatnonzero(members.ravel() == g)
        assignment[rows] = replicas[np.arange(len(rows)) % len(replicas)]
    return assignment


def lpt(work: np.ndarray, kind_of_replica: np.ndarray) -> np.ndarray:
    """Longest first, each to the replica where it finishes earliest; ties to the lowest index."""
    num_kinds = work.shape[1]
    load = np.zeros(len(kind_of_replica))
    # One heap of (load, replica) per kind: the least-loaded replica of each kind is the
    # only candidate of that kind, so a decision looks at one entry per kind.
    heaps = [[(0.0, int(r)) for r in np.flatnonzero(kind_of_replica == k)] for k in range(num_kinds)]
    assignment = np.empty(len(work), dtype=np.int64)
    fastest = work.min(axis=1)
    # A stable sort on -work keeps file order among equal works: deterministic.
    for j in np.argsort(-fastest, kind="stable"):
        best_finish, best_kind = np.inf, -1
        for k in range(num_kinds):
            if np.isfinite(work[j, k]) and heaps[k]:
                finish = heaps[k][0][0] + work[j, k]
                if finish < best_finish or (finish == best_finish and heaps[k][0][1] < heaps[best_kind][0][1]):
                    best_finish, best_kind = finish, k
        _, r = heaps[best_kind][0]
        load[r] = best_finish
        heapq.heapreplace(heaps[best_kind], (best_finish, r))
        assignment[j] = r
    return assignment


def least_loaded(work: np.ndarray, kind_of_replica: np.ndarray, arrival_s: np.ndarray) -> np.ndarray:
    """In arrival order (file order among equal arrivals), each request to the replica where
    it would finish first, a replica working through its requests one after another:
    finish_r <- max(finish_r, a_j) + w_jr. On an offline batch this is plain list scheduling."""
    num_kinds = work.shape[1]
    heaps = [[(0.0, int(r)) for r in np.flatnonzero(kind_of_replica == k)] for k in range(num_kinds)]
    assignment = np.empty(len(work), dtype=np.int64)
    for j in np.argsort(arrival_s, kind="stable"):
        best_finish, best_kind = np.inf, -1
        for k in range(num_kinds):
            if np.isfinite(work[j, k]) and heaps[k]:
                finish = max(heaps[k][0][0], arrival_s[j]) + work[j, k]
                if finish < best_finish or (finish == best_finish and heaps[k][0][1] < heaps[best_kind][0][1]):
                    best_finish, best_kind = finish, k
        _, r = heaps[best_kind][0]
        heapq.heapreplace(heaps[best_kind], (best_finish, r))
        assignment[j] = r
    return assignment
