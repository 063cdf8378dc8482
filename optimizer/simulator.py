"""Iteration-level serving simulator: a trace replayed on a cluster with continuous batching.

Each replica is an engine that runs iterations one after another. An iteration runs prefill
chunks and one decode token for each decoding sequence, and takes (performance profile,
`optimizer.profile`; P = tokens of the prompt already prefilled, L = chunk length):

    t_iter = [a0 + a1 max(T, T_r) + a2 max(0, T - T_k) + a3 sum((P + L)^2 - P^2) + a4 #chunks]   if prefill (T = sum L)
           + [d0 + d1 B + d2 C + d3 B^2]                                                        if B sequences decode (C = their KV tokens)

- A request's first token comes from the iteration that completes its prefill; each other
  token takes one decode iteration. It finishes with its last token.
- KV cache is allocated in blocks: a request is admitted when its prompt fits in the free
  blocks; when a decode step needs a block and none is free, the most recently admitted
  running request is preempted (its blocks freed, its prompt and generated tokens
  recomputed later) and the preemption is counted.
- Runs of identical decode iterations (nothing to admit, nothing finishing, no arrival) are
  fast-forwarded in closed form: k iterations of B sequences take
  k (d0 + d1 B + d3 B^2 + d2 C) + d2 B k (k - 1) / 2.
- Dispatch (`optimizer.dispatch`) places each request on a replica at its arrival, looking
  at the replicas as they are at their first iteration boundary at or after that time. A
  dispatcher with an `interval_s` (the repairer) also acts every interval_s of simulated
  time, moving requests that have not started between waiting queues.
- Deviations (`optimizer.deviation`): real arrivals may differ from the trace's, a replica
  may slow down (its iteration times scaled from a given time) or fail (its unfinished
  requests dispatched again, restarted by recomputation, counted).
- Deterministic: events in (time, kind: failure, arrival, tick; trace order); replicas
  advance in cluster order; the only random draws are seeded (dispatch, deviations).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.batching import POLICIES, Iteration
from optimizer.cluster import Cluster, EngineLimits, Replica
from optimizer.deviation import Deviations
from optimizer.errors import OptimizerError
from optimizer.estimates import (
    Estimates,
    best_chunk_tokens,
    estimate,
    planning_lengths,
    profile_for,
)
from optimizer.predictor import LengthBelief
from optimizer.profile import Profile

MS = 1e-3


class Sequence:
    """A request inside a replica."""

    __slots__ = ("row", "prompt", "output", "arrival", "prefill_need", "prefilled", "generated", "kv_tokens",
                 "blocks", "start", "first_token", "finish", "preemptions", "admitted", "queue_key",
                 "predicted", "tbt_target", "e2e_target", "last_token", "restarts")

    def __init__(self, row: int, prompt: int, output: int, arrival: float, queue_key: float,
                 predicted: int | None = None, tbt_target: float = math.inf, e2e_target: float = math.inf):
        self.row, self.prompt, self.output, self.arrival = row, prompt, output, arrival
        # What length-aware policies may know: the prediction, else the actual length (oracle).
        self.predicted = output if predicted is None else predicted
        self.tbt_target, self.e2e_target = tbt_target, e2e_target
        self.last_token = math.nan
        self.prefill_need = prompt  # tokens to (re)compute before decoding
        self.prefilled = 0
        self.generated = 0
        self.kv_tokens = 0
        self.blocks = 0
        self.start = math.nan
        self.first_token = math.nan
        self.finish = math.nan
        self.preemptions = 0
        self.restarts = 0  # times its replica failed under it
        self.admitted = -1  # admission counter, for choosing whom to preempt
        self.queue_key = queue_key  # waiting-queue order (arrival, or plan order)

    @property
    def prefill_left(self) -> int:
        return self.prefill_need - self.prefilled

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.prefill_need and self.generated < self.output


def _queue_key(seq: Sequence) -> float:
    return seq.queue_key


class Engine:
    """One replica: waiting queue, running sequences, KV blocks, clock."""

    def __init__(self, replica: Replica, profile: Profile, policy):
        self.replica = replica
        self.limits: EngineLimits = replica.limits
        self.profile = profile
        self.policy = policy
        self.keep_finished = getattr(policy, "keeps_finished", False)  # static batches pad finished members
        self.batch_steps = 0  # decode steps since the current static batch was formed
        self.batch_limit = 0  # decode steps the current batch may take (S3)
        self.total_blocks = replica.kv_capacity_tokens // self.limits.block_size_tokens
        self.chunk_tokens = best_chunk_tokens(profile, self.limits.max_num_batched_tokens)
        self.free_blocks = self.total_blocks
        self.waiting: deque[Sequence] = deque()
        self.queue_sorted = True  # waiting is in queue_key order (preemptions can break it)
        self.running: list[Sequence] = []
        self.running_set: set[Sequence] = set()
        self.clock = 0.0
        self.busy_s = 0.0
        self.nominal_busy_s = 0.0
        self.iterations = 0
        self.admissions = 0
        self.finished: list[Sequence] = []
        self.peak_blocks = 0
        self.last_finish = 0.0
        self.slow_from, self.slow_factor = math.inf, 1.0
        self.failed = False
        self.progress = None  # called with the clock after each step, for progress display

    # -- queries used by the batching policies --------------------------------------

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.limits.block_size_tokens)

    def can_admit(self, seq: Sequence, extra_blocks: int = 0) -> bool:
        return self.blocks_for(seq.prefill_need + 1) <= self.free_blocks - extra_blocks

    def waiting_in_order(self):
        return iter(self.waiting)

    def decoding(self):
        return (s for s in self.running if s.decoding)

    def partial_prefills(self) -> list[Sequence]:
        return [s for s in self.running if s.prefilled < s.prefill_need]

    @property
    def idle(self) -> bool:
        return not self.failed and not self.running and not self.waiting

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + sum(1 for s in self.running if math.isnan(s.finish))

    # -- mechanics -----------------------------------------------------------------

    def enqueue(self, seq: Sequence, now: float) -> None:
        # Sorting policies (S3, UELLM) order the queue themselves; others keep the dispatch order.
        if hasattr(self.policy, "queue_key"):
            seq.queue_key = self.policy.queue_key(seq)
        # Keep the waiting queue sorted by queue_key (plans may order out of arrival order).
        if self.waiting and seq.queue_key < self.waiting[-1].queue_key:
            if self.queue_sorted:
                # After the last equal key, as a stable sort of the queue plus `seq` would place it.
                self.waiting.insert(bisect.bisect_right(self.waiting, seq.queue_key, key=_queue_key), seq)
            else:  # a preempted request broke the order: sort everything once
                self.waiting = deque(sorted([*self.waiting, seq], key=_queue_key))
                self.queue_sorted = True
        else:
            self.waiting.append(seq)
        if not self.running and self.clock < now:
            self.clock = now  # an idle replica starts on arrival

    def take(self, seq: Sequence) -> None:
        """Remove a waiting (never admitted) request, for dispatch to move elsewhere."""
        self.waiting.remove(seq)

    def fail(self) -> tuple[list[Sequence], int]:
        """Stop for good. Returns the unfinished requests, reset to be restarted by
        recomputation elsewhere (those that had started count a restart), and the KV
        tokens of work they lose."""
        lost_tokens = 0
        unfinished = [s for s in self.running if math.isnan(s.finish)] + list(self.waiting)
        for seq in unfinished:
            if seq.kv_tokens or seq.generated:
                seq.restarts += 1
                lost_tokens += seq.kv_tokens
            seq.prefill_need = seq.prompt + seq.generated
            seq.prefilled = seq.kv_tokens = seq.blocks = 0
        self.running, self.running_set, self.waiting = [], set(), deque()
        self.free_blocks = self.total_blocks
        self.failed = True
        return unfinished, lost_tokens

    def slowdown_factor(self) -> float:
        """How many times longer an iteration starting now takes (1 before any slowdown)."""
        return self.slow_factor if self.clock >= self.slow_from else 1.0

    def run_until(self, horizon: float) -> None:
        """Run iterations that start before `horizon` (all remaining work if inf)."""
        while self.clock < horizon and not self.failed:
            iteration = self.policy.select(self)
            if not iteration.prefill and not iteration.decode:
                if self.running and self.keep_finished:
                    self.retire_batch(evict=False)
                    continue
                return  # idle until more work arrives
            if not iteration.prefill and getattr(self.policy, "stable", True):
                # A run of decodes stops where a slowdown starts, to be charged at its pace.
                self._decode_run(iteration.decode, min(horizon, self.slow_from) if self.clock < self.slow_from else horizon)
            else:
                self._run_once(iteration)
            if self.progress is not None:
                self.progress(self.clock)

    def prefill_time_s(self, chunks: list) -> float:
        return self._iteration_ms(chunks, 0, 0) * MS

    def decode_time_s(self, batch: int, context: int) -> float:
        return self._iteration_ms([], batch, context) * MS

    def _iteration_ms(self, chunks: list, batch: int, context: int) -> float:
        tokens = sum(n for _, n in chunks)
        attention = sum((s.prefilled + n) ** 2 - s.prefilled**2 for s, n in chunks)
        return self.profile.prefill_iteration_ms(tokens, attention, len(chunks)) + self.profile.decode_iteration_ms(batch, context)

    def _admit(self, seq: Sequence) -> None:
        self.waiting.remove(seq)
        seq.blocks = self.blocks_for(seq.prefill_need + 1)
        self.free_blocks -= seq.blocks
        seq.admitted = self.admissions
        self.admissions += 1
        if math.isnan(seq.start):
            seq.start = self.clock
        self.running.append(seq)
        self.running_set.add(seq)

    def _run_once(self, iteration: Iteration) -> None:
        """One iteration with prefill chunks (and possibly decodes)."""
        for seq, _ in iteration.prefill:
            if seq not in self.running_set:
                self._admit(seq)
        decode = [s for s in iteration.decode if s.decoding]
        self._make_room(decode)
        decode = [s for s in decode if s in self.running_set]
        batch, context = self._batch_shape(decode)
        duration = self._iteration_ms(iteration.prefill, batch, context) * MS * self.slowdown_factor()
        end = self.clock + duration
        for seq, tokens in iteration.prefill:
            seq.prefilled += tokens
            seq.kv_tokens += tokens
            if seq.prefilled >= seq.prefill_need:
                seq.generated += 1  # the prefill pass samples the next token
                seq.last_token = end
                if math.isnan(seq.first_token):
                    seq.first_token = end
        for seq in decode:
            seq.generated += 1
            seq.kv_tokens += 1
            seq.last_token = end
        if decode and self.keep_finished:
            self.batch_steps += 1
        self._advance(duration)
        self._finish([s for s, _ in iteration.prefill] + decode, end)

    def _batch_shape(self, decode: list[Sequence]) -> tuple[int, int]:
        if self.keep_finished and decode:  # padded static batch: every member costs
            return len(self.running), sum(s.kv_tokens for s in self.running)
        return len(decode), sum(s.kv_tokens for s in decode)

    def _decode_run(self, decode: list[Sequence], horizon: float) -> None:
        """k identical decode iterations in closed form (see the module docstring)."""
        self._make_room(decode, steps=1)
        decode = [s for s in decode if s in self.running_set and s.decoding]
        if not decode:
            return
        batch, context = self._batch_shape(decode)
        scale = self.slowdown_factor()
        base_ms = self.profile.decode_iteration_ms(batch, context) * scale
        growth_ms = self.profile.decode_ms_per_context_token * len(decode) * scale  # context added per iteration
        k = min(s.output - s.generated for s in decode)
        if hasattr(self.policy, "max_steps"):
            k = min(k, self.policy.max_steps(self))
        if math.isfinite(horizon):
            # The smallest k whose iterations reach the horizon: growth k^2/2 + (base - growth/2) k >= gap.
            gap_ms = (horizon - self.clock) / MS
            a, b = growth_ms / 2, base_ms - growth_ms / 2
            reach = gap_ms / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * gap_ms)) / (2 * a)
            k = min(k, max(1, math.ceil(reach - 1e-9)))
        k = max(1, min(k, self._steps_that_fit(decode, k)))
        duration = (k * base_ms + growth_ms * k * (k - 1) / 2) * MS
        for seq in decode:
            seq.generated += k
            seq.kv_tokens += k
            seq.blocks = max(seq.blocks, self.blocks_for(seq.kv_tokens + 1))
        self.free_blocks = self.total_blocks - sum(s.blocks for s in self.running)
        self._advance(duration, iterations=k)
        for seq in decode:
            seq.last_token = self.clock
        if self.keep_finished:
            self.batch_steps += k
        self._finish(decode, self.clock)

    def _steps_that_fit(self, decode: list[Sequence], most: int) -> int:
        """Most decode steps (up to `most`) before some sequence needs a block that is not free."""
        tokens = np.array([s.kv_tokens for s in decode])
        held = np.array([s.blocks for s in decode])
        block = self.limits.block_size_tokens

        def needed(k: int) -> int:
            return int(np.maximum(-(-(tokens + k + 1) // block) - held, 0).sum())

        if needed(most) <= self.free_blocks:
            return most
        if needed(1) > self.free_blocks:
            return 1
        low, high = 1, most  # needed(low) fits, needed(high) does not
        while low < high - 1:
            middle = (low + high) // 2
            low, high = (middle, high) if needed(middle) <= self.free_blocks else (low, middle)
        return low

    def _make_room(self, decode: list[Sequence], steps: int = 1) -> None:
        """Preempt the most recently admitted requests until one decode step fits."""
        while True:
            active = [s for s in decode if s in self.running_set]
            need = sum(max(self.blocks_for(s.kv_tokens + steps + 1) - s.blocks, 0) for s in active)
            if need <= self.free_blocks or len(self.running) <= 1:
                for s in active:
                    grow = max(self.blocks_for(s.kv_tokens + steps + 1) - s.blocks, 0)
                    s.blocks += grow
                    self.free_blocks -= grow
                return
            victim = max((s for s in self.running if math.isnan(s.finish)), key=lambda s: s.admitted)
            self._preempt(victim)

    def _preempt(self, seq: Sequence, to_back: bool = False) -> None:
        self.running.remove(seq)
        self.running_set.discard(seq)
        self.free_blocks += seq.blocks
        seq.blocks = 0
        seq.preemptions += 1
        # Recompute: the prompt and every generated token are prefilled again.
        seq.prefill_need = seq.prompt + seq.generated
        seq.prefilled = 0
        seq.kv_tokens = 0
        if to_back:
            self.waiting.append(seq)
            if len(self.waiting) > 1 and self.waiting[-2].queue_key > seq.queue_key:
                self.queue_sorted = False
        else:
            self.waiting.appendleft(seq)
            if len(self.waiting) > 1 and seq.queue_key > self.waiting[1].queue_key:
                self.queue_sorted = False

    def _advance(self, duration_s: float, iterations: int = 1) -> None:
        # KV use is highest at the end of an iteration, when every block it needed is held.
        self.peak_blocks = max(self.peak_blocks, self.total_blocks - self.free_blocks)
        if hasattr(self.policy, "observe"):
            self.policy.observe(duration_s / iterations)
        self.nominal_busy_s += duration_s / self.slowdown_factor()  # what it would have taken at full speed
        self.clock += duration_s
        self.busy_s += duration_s
        self.iterations += iterations

    def _finish(self, candidates: list[Sequence], end: float) -> None:
        done = [s for s in candidates if s.generated >= s.output and math.isnan(s.finish) and s in self.running_set]
        for seq in done:
            seq.finish = end
            self.finished.append(seq)
            self.last_finish = max(self.last_finish, end)
            if not self.keep_finished:
                self._release(seq)

    def _release(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.running_set.discard(seq)
        self.free_blocks += seq.blocks
        seq.blocks = 0

    def retire_batch(self, evict: bool) -> None:
        """End a static batch: release finished members; with `evict`, unfinished members
        go to the back of the queue to be recomputed (S3's failure collection)."""
        for seq in list(self.running):
            if math.isnan(seq.finish):
                if evict:
                    self._preempt(seq, to_back=True)
            else:
                self._release(seq)
        self.batch_steps = 0


@dataclass(frozen=True)
class Simulation:
    """Per-request results and per-replica counters of one simulation."""

    requests: pd.DataFrame  # request_id, replica, arrival_s, start_s, first_token_s, finish_s, preemptions, restarts
    replicas: pd.DataFrame  # replica, busy_s, iterations, last_finish_s, peak_kv_tokens, kv_capacity_tokens, requests, failed
    policy: str
    dispatch: str
    #: Requests restarted on another replica after theirs failed, and the KV tokens of
    #: work they lost (prompt and output tokens recomputed).
    restarted_requests: int = 0
    redone_tokens: int = 0
    #: Requests the dispatcher moved between waiting queues after placing them.
    moved_requests: int = 0


def simulate(
    requests: pd.DataFrame,
    cluster: Cluster,
    *,
    dispatch: str = "least-outstanding",
    policy: str = "sarathi",
    plan: pd.DataFrame | None = None,
    seed: int = 0,
    profiles: dict | None = None,
    estimates: Estimates | None = None,
    policy_options: dict[str, float] | None = None,
    dispatch_options: dict[str, float] | None = None,
    deviations: Deviations | None = None,
    belief: LengthBelief | None = None,
    progress: Callable[[float], None] | None = None,
) -> Simulation:
    """Replay `requests` (with their actual output lengths) on `cluster`.

    Dispatchers see `estimates` made from the planning lengths (predictions where the
    trace has them); the engines run the actual lengths.

    Args:
        policy_options: the batching policy's named options (see `optimizer.batching`).
        dispatch_options: the dispatcher's named options (the repairer's, `optimizer.dispatch`).
        deviations: arrival jitter, slowdowns and failures to inject.
        belief: spread of actual / predicted lengths, for dispatchers that condition on
            progress (default: predictions are exact).
        progress: called with the simulated time (seconds) as it advances; it only
            watches, so results are the same with or without it.
    """
    from optimizer.dispatch import make_dispatcher

    if policy not in POLICIES:
        raise OptimizerError(f"Unknown batching policy {policy!r}; choose one of: {', '.join(POLICIES)}.")
    output = requests["output_tokens"]
    if output.isna().any():
        request_id = requests["request_id"][output.isna()].iloc[0]
        raise OptimizerError(f"Request {request_id!r} has no output_tokens; the simulator runs actual lengths.")
    deviations = deviations or Deviations()
    deviations.check(cluster)
    estimates = estimates or estimate(requests, cluster, planning_lengths(requests), profiles=profiles)
    dispatcher = make_dispatcher(dispatch, requests, cluster, estimates, plan=plan, seed=seed,
                                 options=dispatch_options, belief=belief or LengthBelief.exact())
    POLICIES[policy](**(policy_options or {}))  # validate the options once, before any work
    engines = [Engine(r, profile_for(r, profiles), POLICIES[policy](**(policy_options or {}))) for r in cluster.replicas]
    if progress is not None:
        for engine in engines:
            engine.progress = progress
    for slow in deviations.slowdowns:
        engine = engines[cluster.names.index(slow.replica)]
        engine.slow_from, engine.slow_factor = slow.at_s, slow.factor
    arrival = deviations.arrivals(requests["arrival_s"].to_numpy(dtype=float))
    prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64)
    out = output.to_numpy(dtype=np.int64)
    # Length-aware policies see predictions where the trace has them, else actual lengths.
    predicted = requests["predicted_output_tokens"].astype(object).where(requests["predicted_output_tokens"].notna(), None).tolist() if "predicted_output_tokens" in requests else [None] * len(requests)
    tbt = requests["tbt_target_s"].fillna(np.inf).to_numpy(dtype=float) if "tbt_target_s" in requests else np.full(len(requests), np.inf)
    e2e = requests["e2e_target_s"].fillna(np.inf).to_numpy(dtype=float) if "e2e_target_s" in requests else np.full(len(requests), np.inf)
    sequences: list[Sequence | None] = [None] * len(requests)
    failures = sorted(deviations.failures, key=lambda f: (f.at_s, cluster.names.index(f.replica)))
    interval = getattr(dispatcher, "interval_s", None)
    next_tick = interval if interval else math.inf
    arrivals = np.argsort(arrival, kind="stable").tolist()
    i = f = 0
    redone = 0

    def place(seq: Sequence, now: float) -> None:
        r = dispatcher.choose(seq.row, engines, now)
        dispatcher.placed(seq.row, r)
        engines[r].enqueue(seq, now)

    while True:
        next_arrival = arrival[arrivals[i]] if i < len(arrivals) else math.inf
        next_failure = failures[f].at_s if f < len(failures) else math.inf
        # Ticks matter while something can still be moved or arrive.
        ticking = i < len(arrivals) or any(e.waiting for e in engines)
        now = min(next_arrival, next_failure, next_tick if ticking else math.inf)
        if now == math.inf:
            break
        for engine in engines:
            engine.run_until(now)
        if now == next_failure:
            engine = engines[cluster.names.index(failures[f].replica)]
            f += 1
            unfinished, lost = engine.fail()
            redone += lost
            # The failure shows at the replica's iteration boundary; the others catch up.
            for other in engines:
                other.run_until(engine.clock)
            for seq in sorted(unfinished, key=lambda s: (s.queue_key, s.row)):  # in their queue order
                place(seq, engine.clock)
        elif now == next_arrival:
            j = arrivals[i]
            i += 1
            seq = Sequence(j, int(prompt[j]), int(out[j]), float(arrival[j]), dispatcher.queue_key(j),
                           predicted=None if predicted[j] is None else int(predicted[j]), tbt_target=float(tbt[j]), e2e_target=float(e2e[j]))
            sequences[j] = seq
            place(seq, float(arrival[j]))
        else:
            dispatcher.rebalance(now, engines)
            next_tick += interval
    for engine in engines:
        engine.run_until(math.inf)
    return _results(requests, cluster, engines, sequences, dispatcher, policy, dispatch, arrival, redone)


def _results(requests, cluster, engines, sequences, dispatcher, policy, dispatch, arrival, redone) -> Simulation:
    names = np.asarray(cluster.names, dtype=object)
    replica = np.asarray(dispatcher.replica_of, dtype=np.int64)
    rows = [(seq.start, seq.first_token, seq.finish, seq.preemptions, seq.restarts) for seq in sequences]
    start, first, finish, preemptions, restarts = (np.array(column) for column in zip(*rows))
    if np.isnan(finish).any():
        lost = requests["request_id"].iloc[int(np.argmax(np.isnan(finish)))]
        raise OptimizerError(f"Internal error: request {lost!r} never finished in the simulation.")
    table = pd.DataFrame(
        {
            "request_id": requests["request_id"].to_numpy(),
            "replica": names[replica],
            "arrival_s": arrival,
            "start_s": start.astype(float),
            "first_token_s": first.astype(float),
            "finish_s": finish.astype(float),
            "preemptions": preemptions.astype(np.int64),
            "restarts": restarts.astype(np.int64),
        }
    )
    counts = np.bincount(replica, minlength=len(engines))
    replicas = pd.DataFrame(
        {
            "replica": names,
            "busy_s": [e.busy_s for e in engines],
            "iterations": [e.iterations for e in engines],
            "last_finish_s": [e.last_finish for e in engines],
            "peak_kv_tokens": [e.peak_blocks * e.limits.block_size_tokens for e in engines],
            "kv_capacity_tokens": [e.total_blocks * e.limits.block_size_tokens for e in engines],
            "requests": counts,
            "failed": [e.failed for e in engines],
        }
    )
    return Simulation(table, replicas, policy, dispatch, int(restarts.sum()), redone, getattr(dispatcher, "moves", 0))


def write_simulation(simulation: Simulation, path) -> None:
    """Per-request CSV of a simulation (text cells protected as in plan files)."""
    from optimizer import spreadsheet
    from optimizer.files import atomic_output

    table = simulation.requests.copy()
    for column in ("request_id", "replica"):
        table[column] = spreadsheet.neutralize(table[column])
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")


SIMULATION_COLUMNS = ("request_id", "replica", "arrival_s", "start_s", "first_token_s", "finish_s")


def busy_intervals(start_s: np.ndarray, finish_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of the intervals [start, finish] as disjoint (begins, ends), in time order.

    A replica iterates without pause while it holds an unfinished request, so on one
    replica this union is its busy time. Not exactly for a request restarted after a
    failure: the file keeps its first start, on the replica that failed.
    """
    order = np.argsort(start_s, kind="stable")
    start, finish = start_s[order], finish_s[order]
    reach = np.maximum.accumulate(finish)
    # A new interval begins where a start lies after everything before it has finished.
    new = np.ones(len(start), dtype=bool)
    new[1:] = start[1:] > reach[:-1]
    ends_at = np.r_[np.flatnonzero(new)[1:] - 1, len(start) - 1]
    return start[new], reach[ends_at]


def read_simulation(path, cluster: Cluster, *, requests: pd.DataFrame | None = None, policy: str = "",
                    dispatch: str = "") -> Simulation:
    """A per-request CSV written by `write_simulation`, as a `Simulation`.

    The per-replica counters are rebuilt from the requests: busy time is the union of
    their [start, finish] intervals (`busy_intervals`), iterations and failures are not
    in the file (0 and False). With `requests` (the trace it ran), every request of the
    trace must be in the file exactly once, and the rows come in the trace's order, as
    `optimizer.metrics.summary` expects.
    """
    from pathlib import Path

    from optimizer import spreadsheet

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"request_id": str, "replica": str}, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise OptimizerError(f"{path}: no such file.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise OptimizerError(f"{path}: not a simulation CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    missing = [c for c in SIMULATION_COLUMNS if c not in table]
    if missing:
        raise OptimizerError(f"{path}: missing column(s) {', '.join(missing)}; expected the CSV of `simulate --out`.")
    for column in SIMULATION_COLUMNS[2:]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise OptimizerError(f"{path}: line {row + 2}, field {column}: {table[column].iloc[row]!r} is not a finite number.")
        table[column] = values.astype(float)
    for column in ("preemptions", "restarts"):
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(0).astype(np.int64) if column in table else 0
    for column in ("request_id", "replica"):
        table[column] = spreadsheet.restore(table[column])
    unknown = ~table["replica"].isin(cluster.names)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy()))
        raise OptimizerError(f"{path}: line {row + 2}, field replica: {table['replica'].iloc[row]!r} is not a replica of the cluster ({cluster.describe()}).")
    if requests is not None:
        table = _in_trace_order(table, requests, path)
    busy, last, count = [], [], []
    for name in cluster.names:
        mine = table[table["replica"] == name]
        begins, ends = busy_intervals(mine["start_s"].to_numpy(), mine["finish_s"].to_numpy())
        busy.append(float((ends - begins).sum()))
        last.append(float(mine["finish_s"].max()) if len(mine) else 0.0)
        count.append(len(mine))
    replicas = pd.DataFrame({
        "replica": cluster.names, "busy_s": busy, "iterations": 0, "last_finish_s": last, "peak_kv_tokens": 0,
        "kv_capacity_tokens": [r.kv_capacity_tokens for r in cluster.replicas], "requests": count, "failed": False,
    })
    return Simulation(table, replicas, policy or path.stem, dispatch, restarted_requests=int(table["restarts"].sum()))


def _in_trace_order(table: pd.DataFrame, requests: pd.DataFrame, path) -> pd.DataFrame:
    """The rows of a simulation file in the trace's order; every trace request there once."""
    duplicated = table["request_id"].duplicated()
    if duplicated.any():
        raise OptimizerError(f"{path}: line {int(np.argmax(duplicated.to_numpy())) + 2}: request {table['request_id'][duplicated].iloc[0]!r} appears twice.")
    indexed = table.set_index("request_id")
    ids = requests["request_id"].astype(str)
    missing = ~ids.isin(indexed.index)
    if missing.any():
        raise OptimizerError(f"{path}: request {ids[missing].iloc[0]!r} of the trace is missing ({int(missing.sum()):,} missing in all); was it simulated on this trace?")
    if len(indexed) != len(ids):
        extra = indexed.index[~indexed.index.isin(ids)][0]
        raise OptimizerError(f"{path}: request {extra!r} is not in the trace; was it simulated on this trace?")
    return indexed.loc[ids].reset_index()
