"""One replica's engine: continuous batching iteration by iteration, with a paged KV cache.

An iteration runs prefill chunks and one decode token for each decoding sequence, and takes
(performance profile, `optimizer.fleet.profile`; P = tokens of the prompt already prefilled,
L = chunk length):

    t_iter = prefill(T, S, N)                                         prefill chunks only (T = sum L, N chunks)
           = decode(B, C)                                            B sequences decode only (C = their KV tokens)
           = prefill(T + B, S, N) + decode(B, C) - min(d0, a0 + a1 T_r)   both: the weights are read once

with S = sum((P + L)^2 - P^2) and the forms of `optimizer.fleet.profile`.

- A request's first token comes from the iteration that completes its prefill; each other
  token takes one decode iteration. It finishes with its last token.
- KV cache is allocated in blocks: a request is admitted when its prompt fits in the free
  blocks; when a decode step needs a block and none is free, the most recently admitted
  running request is preempted (its blocks freed, its prompt and generated tokens
  recomputed later) and the preemption is counted.
- With a prefix cache (`optimizer.serving.prefix_cache`), an admitted request skips the
  cached blocks of its prompt and the blocks it computes are cached for later requests.
- Runs of identical decode iterations (nothing to admit, nothing finishing, no arrival) are
  fast-forwarded in closed form: k iterations of B sequences take
  k decode(B, C) + d2 B k (k - 1) / 2.

This is the reference engine, which updates every sequence each step; under lockstep
policies (Sarathi, vLLM) the simulator uses `optimizer.serving.lockstep`, which gives the
same results bit for bit without touching every sequence each step.
"""

from __future__ import annotations

import math

import numpy as np

from optimizer.fleet.cluster import EngineLimits, Replica
from optimizer.fleet.estimates import (
    best_chunk_tokens,
)
from optimizer.fleet.profile import Profile
from optimizer.serving.batching import Iteration
from optimizer.serving.waiting import WaitingQueue

MS = 1e-3


class Sequence:
    """A request inside a replica."""

    __slots__ = ("row", "prompt", "output", "arrival", "prefill_need", "prefilled", "generated", "kv_tokens",
                 "blocks", "start", "first_token", "finish", "preemptions", "admitted", "queue_key",
                 "predicted", "tbt_target", "e2e_target", "last_token", "restarts", "queue_rank", "tick0",
                 "units", "held", "shared_blocks", "next_unit", "cached_tokens")

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
        self.queue_rank = 0  # order among equal keys (`optimizer.serving.waiting`)
        self.tick0 = -1  # the lockstep engine's step its counters were last brought up to
        # Prefix cache (`optimizer.serving.prefix_cache`): its units here, the cached ones it holds,
        # its blocks among those, the next unit to cache, the prompt tokens its admissions found.
        self.units, self.held, self.shared_blocks, self.next_unit, self.cached_tokens = (), [], 0, 0, 0

    @property
    def prefill_left(self) -> int:
        return self.prefill_need - self.prefilled

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.prefill_need and self.generated < self.output


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
        self.waiting = WaitingQueue()
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
        self.stable = getattr(policy, "stable", True)  # may runs of decodes be fast-forwarded?
        self.observe = getattr(policy, "observe", None)  # the policy watches iteration times
        self.cache = None  # a PrefixCache when prefix caching is on
        self.unit_chains = None  # each request's prefix units on this replica (with the cache)

    # -- queries used by the batching policies --------------------------------------

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.limits.block_size_tokens)

    def can_admit(self, seq: Sequence, extra_blocks: int = 0) -> bool:
        if self.cache is not None and seq.units:  # policies read prefill_left after this check
            return self.blocks_for(seq.prefill_need + 1) - self.cache.peek(seq) <= self.free_blocks - extra_blocks
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
        if not self.keep_finished:  # finished requests leave at once
            return len(self.waiting) + len(self.running)
        return len(self.waiting) + sum(1 for s in self.running if math.isnan(s.finish))

    def settle(self) -> None:
        """Bring every running request's counters up to date (the lockstep engine defers them;
        call before reading `generated`, `kv_tokens`, `blocks` or `last_token` of running requests)."""

    # -- mechanics -----------------------------------------------------------------

    def enqueue(self, seq: Sequence, now: float) -> None:
        if self.unit_chains is not None:
            seq.units = self.unit_chains[seq.row]
        # Sorting policies (S3, UELLM) order the queue themselves; others keep the dispatch order.
        if hasattr(self.policy, "queue_key"):
            seq.queue_key = self.policy.queue_key(seq)
        # In queue_key order (plans may order out of arrival order).
        self.waiting.add(seq)
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
        self.settle()
        unfinished = [s for s in self.running if math.isnan(s.finish)] + self.waiting.clear()
        for seq in unfinished:
            if seq.kv_tokens or seq.generated:
                seq.restarts += 1
                lost_tokens += seq.kv_tokens
            seq.prefill_need = seq.prompt + seq.generated
            seq.prefilled = seq.kv_tokens = seq.blocks = 0
            seq.held, seq.shared_blocks, seq.next_unit = [], 0, 0
        if self.cache is not None:
            self.cache.clear()
        self.running, self.running_set = [], set()
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
            if not iteration.prefill and self.stable:
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
        tokens = attention = 0
        for seq, n in chunks:
            tokens += n
            attention += (seq.prefilled + n) ** 2 - seq.prefilled**2
        return self.profile.iteration_ms(tokens, attention, len(chunks), batch, context)

    def _admit(self, seq: Sequence) -> None:
        self.waiting.remove(seq)
        seq.blocks = self.blocks_for(seq.prefill_need + 1)
        self.free_blocks -= seq.blocks
        if self.cache is not None:
            self.free_blocks += self.cache.admit(seq)
        seq.admitted = self.admissions
        self.admissions += 1
        if math.isnan(seq.start):
            seq.start = self.clock
        self.running.append(seq)
        self.running_set.add(seq)

    def _start_prefills(self, iteration: Iteration) -> None:
        """Admit the iteration's new sequences in chunk order. With a prefix cache, a chunk's
        blocks are cached as it is scheduled, so a later chunk of the same iteration finds them
        (vLLM V1 caches blocks when it allocates them; each layer writes its KV before its
        attention reads it), and a chunk larger than what is left to prefill shrinks to it."""
        for i, (seq, tokens) in enumerate(iteration.prefill):
            if seq not in self.running_set:
                self._admit(seq)
            if self.cache is not None:
                iteration.prefill[i] = self.cache.schedule(seq, tokens)

    def _run_once(self, iteration: Iteration) -> None:
        """One iteration with prefill chunks (and possibly decodes)."""
        self._start_prefills(iteration)
        decode = [s for s in iteration.decode if s.decoding]
        self._make_room(decode)
        decode = [s for s in decode if s in self.running_set]
        batch, context = self._batch_shape(decode)
        duration = self._iteration_ms(iteration.prefill, batch, context) * MS * self.slowdown_factor()
        end = self.clock + duration
        self._prefill(iteration.prefill, end)
        for seq in decode:
            seq.generated += 1
            seq.kv_tokens += 1
            seq.last_token = end
        if decode and self.keep_finished:
            self.batch_steps += 1
        self._advance(duration)
        self._finish([s for s, _ in iteration.prefill] + decode, end)

    def _prefill(self, chunks: list, end: float) -> list[Sequence]:
        """Apply an iteration's prefill chunks; returns the sequences whose prefill it completed."""
        completed = []
        for seq, tokens in chunks:
            seq.prefilled += tokens
            seq.kv_tokens += tokens
            if seq.prefilled >= seq.prefill_need:
                seq.generated += 1  # the prefill pass samples the next token
                seq.last_token = end
                if math.isnan(seq.first_token):
                    seq.first_token = end
                completed.append(seq)
        return completed

    def _steps_to(self, horizon: float, base_ms: float, growth_ms: float) -> int:
        """The fewest decode iterations (at least 1) that reach `horizon`: the smallest k with
        growth k^2/2 + (base - growth/2) k >= gap."""
        gap_ms = (horizon - self.clock) / MS
        a, b = growth_ms / 2, base_ms - growth_ms / 2
        reach = gap_ms / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * gap_ms)) / (2 * a)
        return max(1, math.ceil(reach - 1e-9))

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
            k = min(k, self._steps_to(horizon, base_ms, growth_ms))
        k = max(1, min(k, self._steps_that_fit(decode, k)))
        duration = (k * base_ms + growth_ms * k * (k - 1) / 2) * MS
        for seq in decode:
            seq.generated += k
            seq.kv_tokens += k
            seq.blocks = max(seq.blocks, self.blocks_for(seq.kv_tokens + 1))
        self.free_blocks = self.total_blocks - sum(s.blocks for s in self.running)
        if self.cache is not None:  # cached blocks count once, however many sequences hold them
            self.free_blocks += sum(s.shared_blocks for s in self.running) - self.cache.referenced_blocks
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
        self.free_blocks += seq.blocks if self.cache is None else self.cache.leave(seq)
        seq.blocks = 0
        seq.preemptions += 1
        # Recompute: the prompt and every generated token are prefilled again.
        seq.prefill_need = seq.prompt + seq.generated
        seq.prefilled = 0
        seq.kv_tokens = 0
        if to_back:
            self.waiting.put_back(seq)
        else:
            self.waiting.put_front(seq)

    def _advance(self, duration_s: float, iterations: int = 1) -> None:
        if self.cache is not None:  # the iteration's allocations may have overwritten cached blocks
            self.cache.trim(self.free_blocks)
        # KV use is highest at the end of an iteration, when every block it needed is held.
        self.peak_blocks = max(self.peak_blocks, self.total_blocks - self.free_blocks)
        if self.observe is not None:
            self.observe(duration_s / iterations)
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
        self.free_blocks += seq.blocks if self.cache is None else self.cache.leave(seq)
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
