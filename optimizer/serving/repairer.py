"""The online repairer: a plan followed while reality matches it, repaired greedily where it does not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optimizer.common.options import NamedOptions
from optimizer.fleet.estimates import planning_lengths
from optimizer.serving.plan_clock import PlanClock
from optimizer.serving.predictor import LengthBelief
from optimizer.serving.rules import FollowPlan, LeastWork


class Repair(FollowPlan, NamedOptions):
    """The plan, followed while reality matches it and repaired greedily where it does not.

    Two views of each live replica r, refreshed every `interval_s` of simulated time and
    as requests finish (works w are the estimates' seconds of replica time, `Estimates`):

    - the deviation from the plan's own clock, zero while everything goes as planned:

          delta_r = lag_r                                     how far r is behind its plan now
                  + sum over r's running requests of w(E[O | O > g]) - w(max(o_hat, g))
                  + (f_r - 1) x (r's remaining work)

      where lag_r compares r's realised progress with the progress its planned starts and
      ends promised by now (`optimizer.serving.plan_clock`: any cause, wrong estimates,
      arrivals, lengths, slowdowns), a running request predicted at o_hat tokens has
      produced g, E[O | O > g] is its expected length given them
      (`optimizer.serving.predictor.LengthBelief`: the overrun still to come) and f_r the
      replica's slowdown (the part of it still to come). A plan without planned times has
      no clock; then lag_r is the revealed length error of r's finished requests,
      sum w(actual length) - planned w;
    - its estimated finish, calibrated on the replica's own pace:

          E_r = t_r + f_r max(rho_r (waiting work + remaining work of running requests) + drain_r,
                              longest expected remaining decode of a running request)

      where rho_r = (busy time at full speed) / (estimated work done) so far, which absorbs
      whatever the work estimates miss on this replica; the second term is the straggler
      that will finish last however little else is left.

    Decisions (each looks at every replica once: microseconds, no solver call):

    - an arriving request j goes where the plan put it, unless it would start there more
      than `start_slack_s` later than planned (a small slack: time to first token is judged
      in fractions of a second) and another replica b would finish it more than
      `start_slack_s` earlier, where a replica starts j once the work queued ahead of it is
      done and finishes it its own work later:

          S_r(j) = now + rho_r (waiting work + unfinished prefill work of running requests)
          F_r(j) = S_r(j) + rho_r w_jr

      (an arrival that comes early or late is judged the same way, against its planned
      start or now, whichever is later); or unless its planned
      replica a and the replica b where it would finish earliest differ in revealed
      deviation by more than `slack_s` and E_b + w_b + slack_s < E_a;
    - work conservation, every interval once reality has left the plan (an arrival off its
      planned time, |delta_r| > slack_s, a slowdown or a failure): a live replica with
      nothing to run takes the next waiting request of the replica with the latest E_r that
      it can run, so no replica idles longer than `interval_s` while another has queued
      work;
    - repair, every interval: while the latest replica a and the earliest b pass the same
      test, a request that has not started moves from the back of a's queue to b (at most
      `max_moves` per interval);
    - a request planned for a failed replica goes where E_q + w_q is least;
    - a request the plan does not have (the plan covers only the requests known when it
      was made) goes, on arrival, where F_r(j) is least (where E_r + w_r is least for a
      plan without planned times); its work is extra on that replica's clock.

    With no deviation delta_r stays within the slack (the timeline is an estimate, so a
    replica may run a little behind it): every request runs where the plan put it, in the
    plan's order. A moved request keeps its place in the plan's global order (planned start).
    """

    name = "repair"
    label = "Dispatch"
    slack_s = 1.0
    max_moves = 8
    interval_s = 1.0
    start_slack_s = 0.1
    options = {"slack_s": (0.0, None), "max_moves": (0, None), "interval_s": (0.01, None), "start_slack_s": (0.0, None)}

    def __init__(self, requests, cluster, estimates, plan, belief: LengthBelief, **options):
        plan, unplanned = _with_unplanned(requests, cluster, estimates, plan)
        FollowPlan.__init__(self, requests, cluster, estimates, plan)
        self.unplanned = unplanned  # requests the plan did not have: placed on arrival
        NamedOptions.__init__(self, **options)
        self.estimates = estimates
        self.belief = belief
        self.prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64)
        self.actual = requests["output_tokens"].to_numpy(dtype=float)
        self.predicted = planning_lengths(requests).astype(float)
        # Global order: planned start, then replica and order (a replica's own order).
        self.rank = np.empty(len(requests))
        self.rank[np.lexsort((self.order, self.replica, self.planned_start))] = np.arange(len(requests), dtype=float)
        m = len(cluster)
        self.target = self.replica.copy()  # where the repaired plan puts each request
        self.planned_work = self.work_kind[np.arange(len(requests)), self.kind[self.target]]
        self.drain = estimates.drain_s[self.kind]
        self.done_delta = np.zeros(m)  # finished part of delta_r
        self.done_work = np.zeros(m)  # estimated work of finished requests
        self.run_delta = np.zeros(m)  # running part of delta_r
        self.run_left = np.zeros(m)  # expected remaining work of running requests
        self.run_done = np.zeros(m)  # work done so far by running requests
        self.run_chain = np.zeros(m)  # longest expected remaining decode of a running request
        self.waiting_work = np.zeros(m)
        self.seen = [0] * m  # finished requests of each engine already counted
        # The plan's clock, when the plan has planned times (hand-written plans may not).
        rows = np.arange(len(requests))
        self.plan_work = np.where(unplanned, 0.0, self.planned_work)  # w_j at the replica the plan chose (0: not in it)
        self.plan_prefill = estimates.prefill_s[rows, self.kind[self.replica]]
        end = np.full(len(requests), np.nan)
        position = pd.Index(requests["request_id"].astype(str)).get_indexer(plan["request_id"].astype(str))
        end[position] = plan["planned_end_s"].to_numpy(dtype=float)
        has_times = bool(plan["planned_start_s"].notna().all() and plan["planned_end_s"].notna().all())
        self.clock = PlanClock(self.replica, self.planned_start, end, self.plan_work, m) if has_times else None
        self.realised_done = np.zeros(m)  # R_r: planned work of finished requests, and moves
        self.realised_run = np.zeros(m)  # R_r: planned work done by running requests
        self.realised_at = np.zeros(m)  # when realised_run was last brought up to date
        self.moves = 0
        # Queued work decides starts only when requests arrive over time (an offline batch's
        # queue is the plan's order, not arrival order).
        self.timed = bool(np.any(self.arrival != self.arrival[0])) if len(self.arrival) else False
        self.waiting_sums: dict[int, tuple[int, int, float]] = {}  # LeastWork's running sums of queued work
        self.deviated = False  # has reality left the plan? (then work conservation applies)

    def queue_key(self, row: int) -> float:
        return float(self.rank[row])

    # -- the repairer's views --------------------------------------------------------

    def _work(self, rows: np.ndarray, replica: int, output_tokens: np.ndarray) -> np.ndarray:
        return self.estimates.work_for(rows, self.kind[replica], self.prompt[rows], output_tokens)

    def _refresh(self, engines, running: bool) -> None:
        for r, engine in enumerate(engines):
            if engine.failed:
                continue
            new = engine.finished[self.seen[r]:]
            if new:
                rows = np.fromiter((s.row for s in new), dtype=np.int64, count=len(new))
                self.seen[r] = len(engine.finished)
                actual = self._work(rows, r, self.actual[rows])
                self.done_delta[r] += float(np.sum(actual - self.planned_work[rows]))
                self.done_work[r] += float(np.sum(actual))
                self.realised_done[r] += float(np.sum(self.plan_work[rows]))
            if not running:
                continue
            engine.settle()
            self.waiting_work[r] = float(sum(self.planned_work[s.row] for s in engine.waiting))
            live = [s for s in engine.running if math.isnan(s.finish)]
            rows = np.fromiter((s.row for s in live), dtype=np.int64, count=len(live))
            generated = np.fromiter((s.generated for s in live), dtype=float, count=len(live))
            expected_tokens = self.belief.expected_totals(self.predicted[rows], generated)
            expected = self._work(rows, r, expected_tokens)
            done = self._work(rows, r, np.maximum(generated, 1.0))
            if self.clock is None:
                self.run_delta[r] = float(np.sum(expected - self.planned_work[rows]))
            else:
                # Only the overrun still to come: what has run shows in the plan's clock.
                self.run_delta[r] = float(np.sum(expected - self._work(rows, r, np.maximum(self.predicted[rows], generated))))
                prefilled = np.fromiter((s.prefilled / max(s.prefill_need, 1) for s in live), dtype=float, count=len(live))
                prefill = self.plan_prefill[rows]
                decoded = np.minimum(np.maximum(generated - 1, 0) / np.maximum(self.predicted[rows] - 1, 1), 1.0)
                self.realised_run[r] = float(np.sum(prefill * np.minimum(prefilled, 1.0) + (self.plan_work[rows] - prefill) * decoded))
                self.realised_at[r] = engine.clock
            self.run_left[r] = float(np.sum(np.maximum(expected - done, 0.0)))
            self.run_done[r] = float(np.sum(done))
            # Decoding alone, a request's remaining tokens take at least this long each.
            k = self.kind[r]
            step = (self.estimates.min_latency_s[rows, k] - self.estimates.prefill_s[rows, k]) / np.maximum(self.predicted[rows] - 1, 1)
            self.run_chain[r] = float(np.max(step * (expected_tokens - generated), initial=0.0))

    def _views(self, engines) -> tuple[np.ndarray, np.ndarray]:
        """(delta_r, E_r) of every replica; a failed one is never the earliest."""
        deviation = np.zeros(len(engines))
        finish = np.full(len(engines), np.inf)
        for r, engine in enumerate(engines):
            if engine.failed:
                continue
            factor = engine.slowdown_factor()
            left = self.waiting_work[r] + self.run_left[r]
            done = self.done_work[r] + self.run_done[r]
            pace = engine.nominal_busy_s / done if done > 0 and engine.nominal_busy_s > 0 else 1.0
            # The lag as of the last look at the running requests (each interval_s): arrivals
            # in between see it without a walk over every running request.
            revealed = self.done_delta[r] if self.clock is None else self.clock.lag(r, self.realised_at[r], self.realised_done[r] + self.realised_run[r])
            deviation[r] = revealed + self.run_delta[r] + (factor - 1) * left
            finish[r] = engine.clock + factor * max(pace * left + self.drain[r], self.run_chain[r])
            self.deviated |= factor != 1.0 or abs(deviation[r]) > self.slack_s
        return deviation, finish

    def _transfer(self, row: int, a: int, b: int) -> None:
        """On the plan's clock, work moved off a is done as far as a's plan goes; on b it is extra."""
        self.realised_done[a] += self.plan_work[row]
        self.realised_done[b] -= self.plan_work[row]

    def _retarget(self, row: int, replica: int) -> None:
        self.planned_work[row] = self.work(row, replica)
        self.target[row] = replica

    # -- decisions -------------------------------------------------------------------

    def choose(self, row, engines, now=0.0) -> int:
        self._refresh(engines, running=False)
        deviation, finish = self._views(engines)
        planned = int(self.target[row])
        failed = bool(engines[planned].failed)
        self.deviated |= failed or abs(now - self.arrival[row]) > 1e-9
        best = self._earliest(row, engines, finish)
        if self.unplanned[row]:
            # Not in the plan: where the same estimate says it finishes first; extra work there.
            first = int(np.argmin(self._starts(row, engines, now)[1])) if self.clock is not None else best
            self._retarget(row, first)
            self.plan_work[row] = self.planned_work[row]
            self.plan_prefill[row] = self.estimates.prefill_s[row, self.kind[first]]
            self.realised_done[first] -= self.plan_work[row]
            self.waiting_work[first] += self.planned_work[row]
            return first
        if not failed and self.clock is not None and self.timed:
            starts, finishes = self._starts(row, engines, now)
            late = starts[planned] - max(self.planned_start[row], now)
            first = int(np.argmin(finishes))
            if late > self.start_slack_s and finishes[first] + self.start_slack_s < finishes[planned]:
                self.deviated = True
                self.moves += 1
                self._transfer(row, planned, first)
                self._retarget(row, first)
                self.waiting_work[first] += self.planned_work[row]
                return first
        if failed or (
            best != planned and deviation[planned] - deviation[best] > self.slack_s
            and finish[best] + self.work(row, best) + self.slack_s < finish[planned]
        ):
            self.moves += not failed
            self._transfer(row, planned, best)
            self._retarget(row, best)
            planned = best
        self.waiting_work[planned] += self.planned_work[row]
        return planned

    def _starts(self, row: int, engines, now: float) -> tuple[np.ndarray, np.ndarray]:
        """S_r(j) and F_r(j) of the class docstring for every replica (inf where j cannot run)."""
        starts = np.full(len(engines), np.inf)
        finishes = np.full(len(engines), np.inf)
        for r, engine in enumerate(engines):
            if not self.usable(row, r, engines):
                continue
            engine.settle()
            queued = LeastWork._waiting_work(self, r, engine.waiting)
            partial = sum(self.estimates.prefill_s[s.row, self.kind[r]] * s.prefill_left / max(s.prefill_need, 1)
                          for s in engine.running if s.prefilled < s.prefill_need)
            done = self.done_work[r] + self.run_done[r]
            pace = engine.nominal_busy_s / done if done > 0 and engine.nominal_busy_s > 0 else 1.0
            starts[r] = max(now, engine.clock) + engine.slowdown_factor() * pace * (queued + partial)
            finishes[r] = starts[r] + engine.slowdown_factor() * pace * self.work(row, r)
        return starts, finishes

    def _earliest(self, row: int, engines, finish: np.ndarray) -> int:
        # Issue 16 hook: a replica whose prefix cache holds the request's prefix saves that prefill.
        costs = [finish[r] + self.work(row, r) - self.prefix_saving(row, r, engines) if self.usable(row, r, engines) else np.inf for r in range(len(engines))]
        return int(np.argmin(costs))

    def rebalance(self, now: float, engines) -> None:
        """Every interval_s: work conservation, then repair (see the class docstring)."""
        self._refresh(engines, running=True)
        deviation, finish = self._views(engines)
        for b, engine in enumerate(engines):
            if engine.idle and self.deviated:
                donors = sorted((r for r, e in enumerate(engines) if e.waiting and r != b), key=lambda r: (-finish[r], r))
                for a in donors:
                    seq = next((s for s in engines[a].waiting if self.eligible(s.row, b)), None)
                    if seq is not None:
                        self._move(seq, a, b, now, engines, finish)
                        break
        for _ in range(self.max_moves):
            donors = [r for r, e in enumerate(engines) if e.waiting]
            if not donors:
                return
            a = max(donors, key=lambda r: (finish[r], -r))
            b = int(np.argmin(finish))
            if b == a or not deviation[a] - deviation[b] > self.slack_s:
                return
            seq = next((s for s in reversed(engines[a].waiting)
                        if self.eligible(s.row, b) and finish[b] + self.work(s.row, b) - self.prefix_saving(s.row, b, engines) + self.slack_s < finish[a]), None)
            if seq is None:
                return
            self._move(seq, a, b, now, engines, finish)

    def _move(self, seq, a: int, b: int, now: float, engines, finish: np.ndarray) -> None:
        self._transfer(seq.row, a, b)
        finish[a] -= self.planned_work[seq.row]
        self.waiting_work[a] -= self.planned_work[seq.row]
        self._retarget(seq.row, b)
        finish[b] += self.planned_work[seq.row]
        self.waiting_work[b] += self.planned_work[seq.row]
        engines[a].take(seq)
        engines[b].enqueue(seq, now)
        self.placed(seq.row, b)
        self.moves += 1


def _with_unplanned(requests, cluster, estimates, plan) -> tuple[pd.DataFrame, np.ndarray]:
    """The plan with a row for each request it lacks (at the end of its first eligible
    replica's queue, planned to start and end at its arrival, so the plan's clock is
    unchanged), and which requests those are."""
    ids = requests["request_id"].astype(str)
    unplanned = ~ids.isin(plan["request_id"].astype(str)).to_numpy()
    if not unplanned.any():
        return plan, unplanned
    rows = np.flatnonzero(unplanned)
    replica = np.argmax(estimates.eligible[rows][:, estimates.kind_of_replica], axis=1)
    names = np.asarray(cluster.names, dtype=object)[replica]
    counts = plan.groupby("replica").size()
    start = np.array([int(counts.get(name, 0)) for name in names])
    order = start + pd.Series(names).groupby(names).cumcount().to_numpy()
    arrival = requests["arrival_s"].to_numpy(dtype=float)[rows]
    extra = pd.DataFrame({"request_id": ids.to_numpy()[rows], "replica": names, "order": order,
                          "planned_start_s": arrival, "planned_end_s": arrival})
    return pd.concat([plan, extra], ignore_index=True), unplanned
