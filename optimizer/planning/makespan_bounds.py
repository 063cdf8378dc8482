"""Lower bounds for P||Cmax: n jobs with whole-number times p_1 >= p_2 >= ... >= p_n on m
identical machines, minimise the largest machine load.

- L0 (classical): max( ceil(sum_j p_j / m),  p_1,  max_q sum_{i=0..q} p_{qm+1-i} ): among
  the qm+1 longest jobs some machine runs q+1 of them, at least the q+1 shortest of those.
- Bin-packing bound (Dell'Amico & Martello 1995): a makespan C is possible only if the jobs
  fit in m bins of capacity C, so C is impossible as soon as a lower bound on the number of
  bins exceeds m. With the Martello-Toth bound L2(C), for each threshold K <= C/2:

      J1 = {j: p_j > C - K},  J2 = {j: C - K >= p_j > C/2},  J3 = {j: C/2 >= p_j >= K}
      L(C, K) = |J1| + |J2| + max(0, ceil((sum_{J3} p - (|J2| C - sum_{J2} p)) / C))

  (jobs in J1 and J2 need a bin each; J3 fills what J2 leaves and then new bins) and
  L2(C) = max_K L(C, K). Then OPT >= C + 1 for every C with L2(C) > m; a binary search on C
  between L0 and an upper bound finds such a C (any C with L2(C) > m gives a valid bound,
  so the search needs no monotonicity).
- Lifting: the same bin-packing test on the qm+1 longest jobs alone (a subset's makespan
  never exceeds the whole's), for small q, where L2 on all jobs is weakened by the
  rounding of the small ones.

All inputs are whole numbers; every bound is a whole number.
"""

from __future__ import annotations

import numpy as np

#: Lifting looks at the qm+1 longest jobs for q = 1 .. MAX_LIFT.
MAX_LIFT = 6


def l0_bound(times: np.ndarray, m: int) -> int:
    """The classical bound L0 of the module docstring."""
    p = np.sort(np.asarray(times, dtype=np.int64))[::-1]
    n = len(p)
    if n == 0:
        return 0
    bound = max(int(p[0]), -(-int(p.sum()) // m))
    prefix = np.concatenate([[0], np.cumsum(p)])
    for q in range(1, (n - 1) // m + 1):
        top = q * m + 1
        bound = max(bound, int(prefix[top] - prefix[top - q - 1]))
    return bound


def bins_needed(times: np.ndarray, capacity: int) -> int:
    """Martello-Toth L2: a lower bound on the bins of size `capacity` that hold every job."""
    p = np.sort(np.asarray(times, dtype=np.int64))
    c = int(capacity)
    if len(p) == 0:
        return 0
    if p[-1] > c:
        return len(p) + 1  # a job longer than the capacity: impossible
    prefix = np.concatenate([[0], np.cumsum(p)])
    k = np.unique(np.r_[0, p[p <= c // 2]])  # L(C, K) only changes at job times
    n = len(p)
    half_hi = np.searchsorted(p, c / 2, side="right")  # jobs <= C/2 end here
    big_start = np.searchsorted(p, c - k, side="right")  # J1 = p > C - K
    n1 = n - big_start
    n2 = big_start - half_hi  # J2 = C/2 < p <= C - K
    s2 = prefix[big_start] - prefix[half_hi]
    s3 = prefix[half_hi] - prefix[np.searchsorted(p, k, side="left")]  # J3 = K <= p <= C/2
    spare = n2 * c - s2
    extra = np.maximum(0, -(-(s3 - spare) // c))
    return int(np.max(n1 + n2 + extra))


def bin_packing_bound(times: np.ndarray, m: int, low: int, high: int) -> int:
    """The smallest C in [low, high] found by binary search with bins_needed(C) <= m; every C
    tested with bins_needed(C) > m is impossible, so the result is a valid lower bound."""
    lo, hi = int(low), int(high)
    if hi <= lo or bins_needed(times, lo) <= m:
        return lo
    # Invariant: C = lo is impossible; hi is an upper bound (possible or untested, but >= OPT).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bins_needed(times, mid) > m:
            lo = mid
        else:
            hi = mid
    return lo + 1


def lower_bound(times: np.ndarray, m: int, upper: int | None = None) -> int:
    """The best bound of the module docstring: L0, the bin-packing bound and its lifting."""
    p = np.sort(np.asarray(times, dtype=np.int64))[::-1]
    bound = l0_bound(p, m)
    if len(p) <= m:
        return bound
    high = int(upper) if upper is not None else max(bound, 2 * bound)
    bound = max(bound, bin_packing_bound(p, m, bound, high))
    for q in range(1, min(MAX_LIFT, (len(p) - 1) // m) + 1):
        head = p[: q * m + 1]
        bound = max(bound, bin_packing_bound(head, m, bound, max(high, bound)))
    return bound
