"""The plan's own clock: how far each replica is behind (or ahead of) where its plan said it
would be by now, whatever the cause.

For replica r the plan lists its requests j with planned start s_j, end e_j and planned
work w_j (seconds of replica time, `optimizer.fleet.estimates`). Planned progress accrues
linearly while a request is planned to run:

    P_r(t) = sum_j w_j clip((t - s_j) / (e_j - s_j), 0, 1)              (non-decreasing)

Realised progress counts the same planned works for what really happened: a finished
request its whole w_j, a running one the share of its planned tokens it has produced
(prefill first, then decode steps), plus the work moved off r minus the work moved onto r
(a request moved away is no longer r's to do; one moved in, or one the plan never had, is
extra):

    R_r(t) = sum_{j finished} w_j + sum_{j running} w_j progress_j + moved_off_r - moved_on_r

The replica is where its plan was at tau_r = the latest time with P_r(tau) <= R_r(t), and

    lag_r(t) = max(0, t - tau_r)       (> 0: behind its plan)

(never below 0: a replica that has done all it could is on time, even when its plan's
next request is not due yet, and so is one that has done all its plan asked; how far
ahead a replica really is shows in its finish estimate instead).

Any deviation shows in it: wrong work estimates (the batch really run differs from B*),
arrivals late or early, outputs longer or shorter than predicted, slowdowns, failures.
With no deviation and an exact timeline it is 0; as the timeline is itself an estimate,
the repairer compares it against a slack. Each query costs one binary search.
"""

from __future__ import annotations

import numpy as np


class PlanClock:
    """P_r of the module docstring for every replica, and lag queries against it."""

    def __init__(self, replica: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, work_s: np.ndarray, num_replicas: int):
        self.times: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        for r in range(num_replicas):
            rows = np.flatnonzero(replica == r)
            start, end, work = start_s[rows], np.maximum(end_s[rows], start_s[rows]), work_s[rows]
            instant = end <= start
            # Slope changes: + w / (e - s) at s, - w / (e - s) at e (a zero-length request is a step at e).
            rate = np.where(instant, 0.0, work / np.where(instant, 1.0, end - start))
            points = np.r_[start, end]
            order = np.argsort(points, kind="stable")
            points = points[order]
            slope_change = np.r_[rate, -rate][order]
            steps = np.r_[np.zeros(len(rows)), np.where(instant, work, 0.0)][order]
            slope = np.cumsum(slope_change)
            # Value at each breakpoint: previous value + slope since the previous point + steps at it.
            gaps = np.diff(points, prepend=points[0] if len(points) else 0.0)
            values = np.cumsum(np.r_[0.0, slope[:-1]] * gaps + steps) if len(points) else np.zeros(0)
            self.times.append(points)
            self.values.append(np.maximum.accumulate(values) if len(values) else values)

    def planned_progress(self, r: int, t: float) -> float:
        """P_r(t)."""
        if not len(self.times[r]):
            return 0.0
        return float(np.interp(t, self.times[r], self.values[r], left=0.0))

    def plan_time(self, r: int, progress: float) -> float:
        """tau_r: the latest time at which the plan's progress is at most `progress`."""
        times, values = self.times[r], self.values[r]
        if not len(times):
            return progress
        if progress >= values[-1]:
            return float(times[-1] + (progress - values[-1]))
        i = int(np.searchsorted(values, progress, side="right"))
        if i == 0:
            return float(times[0])
        low, high = values[i - 1], values[i]
        return float(times[i - 1] + (times[i] - times[i - 1]) * (progress - low) / (high - low)) if high > low else float(times[i])

    def lag(self, r: int, now: float, realised: float) -> float:
        """lag_r(now) for realised progress R_r(now); 0 once the replica has done all its plan asked."""
        if not len(self.values[r]) or realised >= self.values[r][-1] - 1e-12:
            return 0.0
        return max(0.0, now - self.plan_time(r, realised))
