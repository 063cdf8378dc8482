"""Upper bounds for P||Cmax (jobs with times p_j on m identical machines): constructive rules
and a local search that improves their schedules. Every function is deterministic (ties go
to the lowest index) and returns the machine of each job.

- LPT: longest job first to the least-loaded machine (Graham: within 4/3 - 1/(3m)).
- MULTIFIT (Coffman, Garey & Johnson 1978): binary search on a capacity C; first-fit
  decreasing packs the jobs into bins of size C; the smallest C that needs at most m bins
  gives the schedule (within 13/11 of the optimum).
- Karmarkar-Karp differencing, generalised to m machines: every job starts as a partial
  schedule (p_j, 0, ..., 0); the two partial schedules with the largest spread (largest
  minus smallest load) are merged, largest load of one with smallest of the other, until
  one schedule is left. Strong when jobs are few per machine (m = 2 above all).
- Local search from any schedule: from a machine with the largest load L_a to another
  with load L_b, it exchanges a set of jobs S_a (one or two) for a set S_b (none, one or
  two): move (1-0), swap (1-1), 2-1 and 2-2. With d = p(S_a) - p(S_b), the exchange is
  improving when 0 < d < L_a - L_b: both new loads are below L_a and the sum of squared
  loads strictly drops, so the search ends and the makespan never rises. It takes the
  improving exchange that balances the two machines best, and stops when none is left
  (or after `max_steps` exchanges, a deterministic work limit).
"""

from __future__ import annotations

import heapq

import numpy as np


def lpt(times: np.ndarray, m: int) -> np.ndarray:
    """Longest first, each to the least-loaded machine (lowest index on ties)."""
    heap = [(0, r) for r in range(m)]
    assignment = np.empty(len(times), dtype=np.int64)
    for j in np.argsort(-np.asarray(times), kind="stable"):
        load, r = heap[0]
        heapq.heapreplace(heap, (load + times[j], r))
        assignment[j] = r
    return assignment


def _first_fit_decreasing(times: np.ndarray, order: np.ndarray, capacity: float, m: int) -> np.ndarray | None:
    """FFD into at most m bins of `capacity`; None when a job does not fit."""
    loads = np.zeros(m)
    assignment = np.empty(len(times), dtype=np.int64)
    for j in order:
        fits = np.flatnonzero(loads + times[j] <= capacity)
        if not len(fits):
            return None
        loads[fits[0]] += times[j]
        assignment[j] = fits[0]
    return assignment


def multifit(times: np.ndarray, m: int, iterations: int = 12) -> np.ndarray:
    """MULTIFIT of the module docstring (falls back to LPT when no capacity tried fits)."""
    times = np.asarray(times)
    order = np.argsort(-times, kind="stable")
    total = float(times.sum())
    low = max(total / m, float(times.max()))
    high = max(2 * total / m, float(times.max()))
    best = None
    for _ in range(iterations):
        capacity = (low + high) / 2
        if np.issubdtype(times.dtype, np.integer):
            capacity = float(np.floor(capacity))
        found = _first_fit_decreasing(times, order, capacity, m)
        if found is None:
            low = capacity
        else:
            best, high = found, capacity
        if high - low < (1 if np.issubdtype(times.dtype, np.integer) else 1e-9 * high):
            break
    if best is None:
        best = _first_fit_decreasing(times, order, high, m)
    return best if best is not None else lpt(times, m)


def karmarkar_karp(times: np.ndarray, m: int) -> np.ndarray:
    """Largest differencing of the module docstring."""
    times = np.asarray(times)
    n = len(times)
    # A partial schedule: loads sorted descending, with the jobs of each load.
    heap: list[tuple[float, int, list[float], list[list[int]]]] = []
    for j in range(n):
        loads = [float(times[j])] + [0.0] * (m - 1)
        groups = [[j]] + [[] for _ in range(m - 1)]
        heap.append((-float(times[j]), j, loads, groups))
    heapq.heapify(heap)
    while len(heap) > 1:
        _, key_a, loads_a, groups_a = heapq.heappop(heap)
        _, key_b, loads_b, groups_b = heapq.heappop(heap)
        # Largest of one with smallest of the other.
        merged = sorted(
            ((loads_a[i] + loads_b[m - 1 - i], groups_a[i] + groups_b[m - 1 - i]) for i in range(m)),
            key=lambda item: -item[0],
        )
        loads = [load for load, _ in merged]
        groups = [group for _, group in merged]
        heapq.heappush(heap, (-(loads[0] - loads[-1]), min(key_a, key_b), loads, groups))
    assignment = np.empty(n, dtype=np.int64)
    if heap:
        for r, group in enumerate(heap[0][3]):
            assignment[group] = r
    return assignment


def makespan(times: np.ndarray, assignment: np.ndarray, m: int) -> float:
    return float(np.bincount(assignment, weights=times, minlength=m).max()) if len(times) else 0.0


def _subsets(jobs: np.ndarray, times: np.ndarray, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of the job subsets of the given sizes (0, 1 or 2) of `jobs`, with their members
    (-1 for none), sorted by sum."""
    sums, first, second = [], [], []
    for size in sizes:
        if size == 0:
            sums.append(np.zeros(1)), first.append(np.array([-1])), second.append(np.array([-1]))
        elif size == 1:
            sums.append(times[jobs].astype(float)), first.append(jobs), second.append(-np.ones(len(jobs), dtype=np.int64))
        elif size == 2 and len(jobs) >= 2:
            i, k = np.triu_indices(len(jobs), 1)
            sums.append((times[jobs[i]] + times[jobs[k]]).astype(float)), first.append(jobs[i]), second.append(jobs[k])
    if not sums:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    s, a, b = np.concatenate(sums), np.concatenate(first), np.concatenate(second)
    order = np.lexsort((b, a, s))
    return s[order], a[order], b[order]


#: Above this many jobs on one machine, pairs (2-1 and 2-2 exchanges) are not enumerated:
#: with many jobs per machine single moves and swaps already balance to within a job.
MAX_PAIR_JOBS = 200


def local_search(times: np.ndarray, assignment: np.ndarray, m: int, max_steps: int = 10_000) -> np.ndarray:
    """The local search of the module docstring; never returns a worse schedule."""
    times = np.asarray(times)
    assignment = np.array(assignment, dtype=np.int64, copy=True)
    if len(times) == 0:
        return assignment
    loads = np.bincount(assignment, weights=times, minlength=m).astype(float)
    tolerance = 1e-9 * max(float(times.max()) if len(times) else 0.0, 1.0) if not np.issubdtype(times.dtype, np.integer) else 0.0
    # Subset sums per machine, recomputed only for the two machines an exchange changes.
    cache: dict[tuple[int, bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    pairs_ok = np.bincount(assignment, minlength=m) <= MAX_PAIR_JOBS

    def subsets(r: int, with_empty: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (r, with_empty, bool(pairs_ok[r]))
        if key not in cache:
            sizes = ((0,) if with_empty else ()) + ((1, 2) if pairs_ok[r] else (1,))
            cache[key] = _subsets(np.flatnonzero(assignment == r), times, sizes)
        return cache[key]

    for _ in range(max_steps):
        best = None  # (imbalance after, a, b, out_a, out_b)
        top = float(loads.max())
        by_load = np.argsort(loads, kind="stable").tolist()
        for a in np.flatnonzero(loads >= top - tolerance).tolist():
            sums_a, a1, a2 = subsets(a, False)
            for b in by_load:
                gap = loads[a] - loads[b]
                if gap <= tolerance:
                    break  # loads ascending: the rest are as loaded as a
                sums_b, b1, b2 = subsets(b, True)
                # For each S_a, the S_b with d = s_a - s_b closest to gap / 2 in (0, gap).
                at = np.searchsorted(sums_b, sums_a - gap / 2)
                for idx in (np.minimum(at, len(sums_b) - 1), np.maximum(at - 1, 0)):
                    d = sums_a - sums_b[idx]
                    ok = (d > tolerance) & (d < gap - tolerance)
                    if not ok.any():
                        continue
                    after = np.where(ok, np.abs(gap - 2 * d), np.inf)
                    i = int(np.argmin(after))
                    if best is None or after[i] < best[0] - tolerance:
                        k = int(idx[i])
                        best = (float(after[i]), a, b, (int(a1[i]), int(a2[i])), (int(b1[k]), int(b2[k])))
            if best is not None:
                break  # improve the first critical machine that can be improved
        if best is None:
            break
        _, a, b, out_a, out_b = best
        for j in out_a:
            if j >= 0:
                assignment[j] = b
                loads[a] -= times[j]
                loads[b] += times[j]
        for j in out_b:
            if j >= 0:
                assignment[j] = a
                loads[b] -= times[j]
                loads[a] += times[j]
        for r in (a, b):
            pairs_ok[r] = np.count_nonzero(assignment == r) <= MAX_PAIR_JOBS
            for key in [key for key in cache if key[0] == r]:
                del cache[key]
    return assignment


def min_slack_pack(times: np.ndarray, m: int, capacity: int, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """A schedule aiming at makespan `capacity` (minimum bin slack, after Gupta & Ho 1999):
    machine by machine, the longest job left, then repeatedly the one or two jobs left that
    fill the machine closest to `capacity` (longest jobs first on ties); jobs that fit
    nowhere go to the least-loaded machine. Strong when machines run few jobs each. With
    `rng`, the jobs are ordered by time less a uniform draw in [0, noise) and ties between
    pairs are broken at random (a seeded generator keeps it deterministic)."""
    times = np.asarray(times)
    key = -times.astype(float) if rng is None else -times + noise * rng.random(len(times))
    order = np.argsort(key, kind="stable")
    assignment = np.full(len(times), -1, dtype=np.int64)
    left = order.copy()
    for machine in range(m):
        if not len(left):
            break
        chosen = [int(left[0])]
        room = capacity - times[left[0]]
        cand = left[1:]
        while room > 0 and len(cand):
            t = times[cand]
            best, pick = -1, ()
            fit = np.flatnonzero(t <= room)
            if len(fit):
                longest = int(fit[np.argmax(t[fit])])
                best, pick = int(t[longest]), (longest,)
            if best < room and len(fit) >= 2:
                sub = fit[: 400]
                i, k = np.triu_indices(len(sub), 1)
                sums = t[sub[i]] + t[sub[k]]
                ok = np.flatnonzero(sums <= room)
                if len(ok):
                    at = ok[np.argmax(sums[ok])]
                    if rng is not None:
                        ties = ok[sums[ok] == sums[at]]
                        at = ties[rng.integers(len(ties))]
                    if sums[at] > best:
                        best, pick = int(sums[at]), (int(sub[i[at]]), int(sub[k[at]]))
            if best < 0:
                break
            chosen += [int(cand[p]) for p in pick]
            room -= best
            cand = np.delete(cand, list(pick))
        assignment[chosen] = machine
        left = cand if len(cand) == len(left) - len(chosen) else np.array([j for j in left if assignment[j] < 0], dtype=np.int64)
    if len(left):
        loads = np.bincount(assignment[assignment >= 0], weights=times[assignment >= 0], minlength=m).astype(float)
        for j in left:
            r = int(np.argmin(loads))
            assignment[j] = r
            loads[r] += times[j]
    return assignment


#: Minimum-slack packing is tried only with at most this many jobs per machine on average,
#: at up to MAX_TARGETS capacities from the lower bound up, then min(MAX_RESTARTS,
#: RESTART_JOBS // n) times more at the bound with random (seeded) perturbations, noise
#: NOISES x the longest time.
MAX_PACK_JOBS_PER_MACHINE = 5
MAX_TARGETS = 12
RESTART_JOBS = 3_000
MAX_RESTARTS = 40
NOISES = (0.005, 0.02, 0.05)


def targeted(times: np.ndarray, m: int, lower: int, assignment: np.ndarray) -> np.ndarray:
    """The best of `assignment` and the minimum-slack packings aimed at lower, lower + 1, ...
    (each improved by local search), stopping at the first that reaches its target, then
    of perturbed packings aimed at `lower` (module constants), stopping if one reaches it."""
    times = np.asarray(times)
    best, best_c = assignment, makespan(times, assignment, m)
    if len(times) > MAX_PACK_JOBS_PER_MACHINE * m or not len(times):
        return best
    for capacity in range(int(lower), int(min(best_c, lower + MAX_TARGETS))):
        found = local_search(times, min_slack_pack(times, m, capacity), m, max_steps=2_000)
        c = makespan(times, found, m)
        if c < best_c:
            best, best_c = found, c
        if best_c <= capacity:
            break
    rng = np.random.default_rng(0)
    for k in range(min(MAX_RESTARTS, RESTART_JOBS // len(times))):
        if best_c <= lower:
            break
        noise = NOISES[k % len(NOISES)] * float(times.max())
        found = local_search(times, min_slack_pack(times, m, int(lower), rng, noise), m, max_steps=2_000)
        c = makespan(times, found, m)
        if c < best_c:
            best, best_c = found, c
    return best
