"""Planned start and end times of each replica's requests, from the per-request estimates.

A replica runs at most B* sequences at once (its best sustainable batch) and stops its
decoding batch whenever it prefills a newly admitted prompt, as a prefill-first engine
does. So it is modelled as B* decode slots on a clock tau that stands still during
prefills:

- requests take slots in their planned order; request j is admitted at wall time
  max(arrival_j, earliest free slot, end of the previous prefill) and its prefill pauses
  every slot for prefill_j;
- it then holds its slot for decode_j = B* x (work_j - prefill_j) of decode time, its
  share of decode work at full batches, but no less than decoding alone takes;
- wall time = tau + total prefill time of the requests admitted so far.

With arrivals, admissions wait for B_cap slots instead (`optimizer.fleet.concurrency`): a
replica whose batch is below B* for want of requests admits an arrival at once, while each
request keeps its decode time at B*.

A replica's estimated finish is therefore (decode-slot makespan) + (sum of its prefills),
which with full batches is its total work. The plan's estimated makespan is the latest
end over replicas.
"""

from __future__ import annotations

import heapq

import numpy as np


def replica_times(
    replica: np.ndarray,
    arrival_s: np.ndarray,
    prefill_s: np.ndarray,
    decode_s: np.ndarray,
    slots: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock start (admission) and end of each row; rows are in run order per replica.

    Args:
        replica: replica index of each row.
        arrival_s, prefill_s, decode_s: per row.
        slots: decode slots (B*) of each replica, indexed by replica.
    """
    start = np.empty(len(replica))
    end = np.empty(len(replica))
    for r in np.unique(replica):
        rows = np.flatnonzero(replica == r)
        free_tau = [0.0] * int(slots[r])
        paused = 0.0  # prefill time so far: wall = tau + paused
        admitted_tau = np.empty(len(rows))
        paused_after = np.empty(len(rows))
        end_tau = np.empty(len(rows))
        tau = 0.0
        for i, row in enumerate(rows.tolist()):
            # Prefills run one after another: admission waits for the previous one's prefill.
            tau = max(float(arrival_s[row]) - paused, free_tau[0], tau)
            wall = tau + paused
            paused += float(prefill_s[row])
            admitted_tau[i], paused_after[i] = tau, paused
            end_tau[i] = tau + float(decode_s[row])
            heapq.heapreplace(free_tau, end_tau[i])
            start[row] = wall
        # A request ends after its decode time plus every prefill admitted before it ends.
        before_end = np.searchsorted(admitted_tau, end_tau, side="right") - 1
        end[rows] = end_tau + paused_after[before_end]
    return start, end
