"""The lockstep engine: the reference engine's results, without touching every sequence every step.

Under a lockstep policy (every iteration decodes all decoding sequences or none: Sarathi,
vLLM), decoding sequences advance together, one token per decode step. So instead of
updating each of them per iteration (`optimizer.serving.engine`, O(batch) per step), this
engine counts decode steps (`tick`) and keeps per decoding sequence only the step its
counters were last brought up to (`tick0`); its true counts are

    generated = generated(tick0) + tick - tick0,  kv_tokens = kv_tokens(tick0) + tick - tick0,
    blocks = ceil((kv_tokens + 1) / block),  last_token = end of the latest decode step.

What a step needs is kept as running state, each O(1) or O(block) to read:

- KV tokens of the decoding batch C (grows by B per step);
- the next finisher: a heap of (step at which it produces its last token, admission order);
- blocks the batch needs in k more steps, crossings(k) = sum_p n_p floor((p + k) / block),
  n_p = decoding sequences with kv_tokens mod block = p (stored relative to tick, so they
  stay put as all advance): the reference engine's room check and `_steps_that_fit`
  without a scan (a decoding sequence holds exactly ceil((kv_tokens + 1) / block) blocks).

Every float is computed by the same expression, from the same integers, in the same order
as the reference engine, so the results are byte-identical (tests/serving/test_equivalence.py
and a hypothesis test compare the two engines). Anything unusual (a step that must preempt,
a failure) settles the counters and runs the reference engine's code for that step.
"""

from __future__ import annotations

import bisect
import heapq
import math

from optimizer.serving.batching import Iteration
from optimizer.serving.engine import MS, Engine, Sequence


def _admission(seq: Sequence) -> int:
    return seq.admitted


class LockstepEngine(Engine):
    """An `Engine` for lockstep batching policies (see the module docstring)."""

    def __init__(self, replica, profile, policy):
        super().__init__(replica, profile, policy)
        self.block = self.limits.block_size_tokens
        self.tick = 0  # decode steps so far
        self.tick_end = math.nan  # when the latest decode step ended
        self.group: list[Sequence] = []  # decoding sequences, in admission (= running) order
        self.prefilling: list[Sequence] = []  # running sequences still prefilling, in admission order
        self.finishing: list[tuple[int, int, Sequence]] = []  # heap: (step of the last token, admission, seq)
        self.phase = [0] * self.block  # decoding sequences by (kv_tokens - tick) mod block
        self.context = 0  # KV tokens of the decoding sequences

    # -- what policies and dispatchers see -------------------------------------------

    def decoding(self):
        return self.group

    def partial_prefills(self) -> list[Sequence]:
        return list(self.prefilling)

    def settle(self) -> None:
        tick = self.tick
        for seq in self.group:
            steps = tick - seq.tick0
            if steps:
                self._bring_up(seq, steps)

    def _bring_up(self, seq: Sequence, steps: int) -> None:
        seq.generated += steps
        seq.kv_tokens += steps
        seq.blocks = -(-(seq.kv_tokens + 1) // self.block)
        seq.last_token = self.tick_end
        seq.tick0 = self.tick

    def crossings(self, steps: int) -> int:
        """Blocks the decoding sequences need to decode `steps` more tokens each: each needs
        steps // block, plus one if its kv_tokens mod block is at least block - steps % block."""
        block = self.block
        full, rest = divmod(steps, block)
        total = len(self.group) * full
        if rest:
            phase = self.phase
            start = (block - rest - self.tick) % block  # where kv_tokens mod block = block - rest is stored
            end = start + rest
            total += sum(phase[start:end]) if end <= block else sum(phase[start:]) + sum(phase[: end - block])
        return total

    # -- mechanics -------------------------------------------------------------------

    def fail(self):
        result = super().fail()
        self._rebuild()
        return result

    def _admit(self, seq: Sequence) -> None:
        super()._admit(seq)
        self.prefilling.append(seq)

    def _by_reference(self, step, *args) -> None:
        """Run one step with the reference engine's code (it may preempt), then rebuild."""
        self.settle()
        step(*args)
        self._rebuild()

    def _rebuild(self) -> None:
        tick = self.tick
        self.group = [s for s in self.running if s.decoding]
        self.prefilling = [s for s in self.running if s.prefilled < s.prefill_need]
        self.phase = [0] * self.block
        self.finishing = []
        for seq in self.group:
            seq.tick0 = tick
            self.phase[(seq.kv_tokens - tick) % self.block] += 1
            self.finishing.append((tick + seq.output - seq.generated, seq.admitted, seq))
        heapq.heapify(self.finishing)
        self.context = sum(s.kv_tokens for s in self.group)

    def _join(self, seq: Sequence) -> None:
        """A sequence whose prefill just completed starts decoding with the others."""
        seq.tick0 = self.tick
        bisect.insort(self.group, seq, key=_admission)
        self.phase[(seq.kv_tokens - self.tick) % self.block] += 1
        self.context += seq.kv_tokens
        heapq.heappush(self.finishing, (self.tick + seq.output - seq.generated, seq.admitted, seq))

    def _finish_decoders(self, end: float) -> None:
        """Sequences whose last token came in the latest decode step, in admission order."""
        finishing = self.finishing
        while finishing and finishing[0][0] <= self.tick:
            seq = heapq.heappop(finishing)[2]
            self._bring_up(seq, self.tick - seq.tick0)
            self.group.remove(seq)
            self.phase[(seq.kv_tokens - self.tick) % self.block] -= 1
            self.context -= seq.kv_tokens
            self._done(seq, end)

    def _done(self, seq: Sequence, end: float) -> None:
        seq.finish = end
        self.finished.append(seq)
        self.last_finish = max(self.last_finish, end)
        self._release(seq)

    def _run_once(self, iteration: Iteration) -> None:
        """The reference `_run_once` (prefill chunks and possibly decodes), in O(chunks)."""
        self._start_prefills(iteration)
        batch = len(iteration.decode)
        if batch:
            need = self.crossings(1)
            if batch != len(self.group) or need > self.free_blocks:
                return self._by_reference(super()._run_once, iteration)
            self.free_blocks -= need
        duration = self._iteration_ms(iteration.prefill, batch, self.context if batch else 0) * MS * (
            self.slow_factor if self.clock >= self.slow_from else 1.0)
        end = self.clock + duration
        prefilled = self._prefill(iteration.prefill, end)
        if batch:
            self.tick += 1
            self.context += batch
            self.tick_end = end
        self._advance(duration)
        for seq in prefilled:
            self.prefilling.remove(seq)
        # The reference engine finishes prefill chunks first, then decodes in running order.
        for seq, _ in iteration.prefill:
            if seq.generated >= seq.output and math.isnan(seq.finish) and seq in self.running_set:
                self._done(seq, end)
        if batch and self.finishing and self.finishing[0][0] <= self.tick:
            self._finish_decoders(end)
        for seq in prefilled:
            if math.isnan(seq.finish):
                self._join(seq)

    def _decode_run(self, decode: list[Sequence], horizon: float) -> None:
        """The reference `_decode_run` (k identical decode steps in closed form), in O(block)."""
        batch = len(decode)
        if batch != len(self.group) or self.crossings(1) > self.free_blocks:
            return self._by_reference(super()._decode_run, decode, horizon)
        scale = self.slowdown_factor()
        base_ms = self.profile.decode_iteration_ms(batch, self.context) * scale
        growth_ms = self.profile.decode_ms_per_context_token * batch * scale  # context added per iteration
        k = self.finishing[0][0] - self.tick
        if hasattr(self.policy, "max_steps"):
            k = min(k, self.policy.max_steps(self))
        if math.isfinite(horizon):
            k = min(k, self._steps_to(horizon, base_ms, growth_ms))
        k = max(1, min(k, self._steps_fitting(k)))
        duration = (k * base_ms + growth_ms * k * (k - 1) / 2) * MS
        self.free_blocks -= self.crossings(k)
        self.tick += k
        self.context += k * batch
        self._advance(duration, iterations=k)
        self.tick_end = self.clock
        self._finish_decoders(self.clock)

    def _steps_fitting(self, most: int) -> int:
        """Most decode steps (up to `most`) whose blocks are free: the reference's answer
        (needed blocks only grow with the steps, so it is the largest k that fits)."""
        free = self.free_blocks
        if len(self.group) * ((self.block - 1 + most) // self.block) <= free or self.crossings(most) <= free:
            return most
        low, high = 1, most  # crossings(low) fits (the room check passed), crossings(high) does not
        while low < high - 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self.crossings(middle) <= free else (low, middle)
        return low
