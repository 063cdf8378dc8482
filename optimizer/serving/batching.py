"""Per-replica batching policies: what one iteration of a replica runs.

Each policy is a small class with one method, `select(engine)`, returning the iteration to
run next: the prefill chunks (sequence, tokens) and whether the running sequences decode.
The engine (`optimizer.serving.simulator`) charges the iteration with the performance model,
admits, grows the KV cache, and fast-forwards runs of identical decode iterations.

- ``vllm``: prefill-first without chunking. Whenever a waiting prompt fits (batch size,
  token budget, KV cache), the iteration prefills whole prompts only; otherwise every
  running sequence decodes. Not work-conserving: decodes stall during prefills.
- ``sarathi``: decode-first with chunked prefill (Sarathi-Serve). Every running sequence
  decodes, and the rest of the iteration's token budget goes to prefill chunks in arrival
  order.
- ``orca``: prefill-first with chunking, mixed batches (Orca). The token budget goes to
  prefill chunks first and the rest to decodes (each decode is one token).

The token budget of chunking policies is the replica's `chunk_tokens`: by default the
iteration size with the least prefill time per token under the profile (at most
max_num_batched_tokens), the "optimal tiling" of the throughput-optimal literature.
- ``static``: static batching (FasterTransformer). A batch of up to max_num_seqs waiting
  requests is prefilled together and decodes until its longest member ends; members that
  finish early keep their slot (padding) until then.
- ``s3``, ``uellm``, ``slai``, ``hybrid``: the reference systems' schedulers, each
  described in its class below with its named parameters (the papers' values as defaults).

Length-aware policies (s3, uellm) see `predicted_output_tokens` where the trace has it, and
the actual length otherwise (an oracle).

A policy marked `lockstep` decodes, in every iteration, all decoding sequences or none, and
looks at decoding sequences only through their number; the simulator runs it on the
lockstep engine (`optimizer.serving.lockstep`), which gives the same results faster.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from optimizer.common.options import NamedOptions


@dataclass
class Iteration:
    """One iteration: prefill chunks (sequence, tokens) and the sequences that decode."""

    prefill: list = field(default_factory=list)
    decode: list = field(default_factory=list)


class Policy(NamedOptions):
    """Base of the batching policies: named options (`optimizer.common.options`) and `select`."""


class Vllm(Policy):
    name = "vllm"
    lockstep = True

    def select(self, engine) -> Iteration:
        chunks, budget = [], engine.limits.max_num_batched_tokens
        slots = engine.limits.max_num_seqs - len(engine.running)
        for seq in engine.waiting_in_order():
            # The room check comes first: with a prefix cache it sets what is left to prefill.
            if slots <= 0 or not engine.can_admit(seq, extra_blocks=sum(engine.blocks_for(s.prefill_left) for s, _ in chunks)):
                break
            need = seq.prefill_left
            # A prompt longer than the budget runs alone (vLLM requires budget >= model length).
            if need > budget and chunks:
                break
            chunks.append((seq, need))
            budget -= need
            slots -= 1
        if chunks:
            return Iteration(prefill=chunks)
        return Iteration(decode=list(engine.decoding()))


class Sarathi(Policy):
    name = "sarathi"
    lockstep = True
    #: Tokens per iteration; 0 = the profile's cheapest chunk size.
    chunk_tokens = 0
    options = {"chunk_tokens": (0, None)}

    def select(self, engine) -> Iteration:
        decode = list(engine.decoding())
        budget = (self.chunk_tokens or engine.chunk_tokens) - len(decode)
        return Iteration(prefill=_chunks(engine, budget), decode=decode)


class Orca(Policy):
    name = "orca"
    #: Tokens per iteration; 0 = the profile's cheapest chunk size.
    chunk_tokens = 0
    options = {"chunk_tokens": (0, None)}

    def select(self, engine) -> Iteration:
        size = self.chunk_tokens or engine.chunk_tokens
        chunks = _chunks(engine, size)
        budget = size - sum(tokens for _, tokens in chunks)
        decode = list(engine.decoding())[: max(budget, 0)]
        return Iteration(prefill=chunks, decode=decode)


class Static(Policy):
    name = "static"
    keeps_finished = True

    def select(self, engine) -> Iteration:
        if engine.running:  # the current batch runs until its longest member ends
            return Iteration(decode=list(engine.decoding()))
        chunks = []
        for seq in engine.waiting_in_order():
            if len(chunks) >= engine.limits.max_num_seqs or not engine.can_admit(seq, extra_blocks=sum(engine.blocks_for(s.prefill_left) for s, _ in chunks)):
                break
            chunks.append((seq, seq.prefill_left))
        return Iteration(prefill=chunks)


def _chunks(engine, budget: int) -> list:
    """Prefill chunks under a token budget: partial prefills first, then new prompts, in order."""
    chunks = []
    slots = engine.limits.max_num_seqs - len(engine.running)
    extra = 0
    for seq in itertools.chain(engine.partial_prefills(), engine.waiting_in_order()):
        if budget <= 0:
            break
        new = seq not in engine.running_set
        if new:
            if slots <= 0 or not engine.can_admit(seq, extra_blocks=extra):
                break
            slots -= 1
            extra += engine.blocks_for(seq.prefill_left)
        tokens = min(seq.prefill_left, budget)
        chunks.append((seq, tokens))
        budget -= tokens
    return chunks


class S3(Policy):
    """S3 sequence scheduling (Zheng et al. 2023): the queue is sorted by predicted output
    length; a micro-batch takes requests of one length bucket, as many as that bucket allows
    (Variable Batch Size), and runs as a static batch until its
    longest prediction. Members still unfinished then are evicted and recomputed at the back
    of the queue with a doubled prediction (Failure Collection and Recomputation)."""

    name = "s3"
    keeps_finished = True
    #: (predicted length up to, micro-batch size) from the paper; longer: LONG_BATCH.
    BUCKETS = ((50, 256), (100, 128), (150, 64), (200, 32))
    LONG_BATCH = 16
    #: Prediction growth after a failure.
    failure_growth = 2.0
    options = {"failure_growth": (1.01, None)}

    def queue_key(self, seq) -> float:
        return float(seq.predicted)

    def bucket(self, predicted: int) -> int:
        return next((i for i, (limit, _) in enumerate(self.BUCKETS) if predicted <= limit), len(self.BUCKETS))

    def batch_size(self, predicted: int) -> int:
        return next((size for limit, size in self.BUCKETS if predicted <= limit), self.LONG_BATCH)

    def max_steps(self, engine) -> int:
        """Decode steps left before the batch reaches its longest prediction."""
        return max(engine.batch_limit - engine.batch_steps, 1)

    def select(self, engine) -> Iteration:
        if engine.running:
            decode = list(engine.decoding())
            if decode and engine.batch_steps < engine.batch_limit:
                return Iteration(decode=decode)
            engine.retire_batch(evict=True)
            for seq in engine.waiting:
                if seq.preemptions and seq.generated >= seq.predicted:
                    seq.predicted = max(int(self.failure_growth * seq.predicted), seq.generated + 1)
        chunks = []
        for seq in engine.waiting_in_order():
            first = chunks[0][0].predicted if chunks else seq.predicted
            size = min(self.batch_size(first), engine.limits.max_num_seqs)
            same_bucket = self.bucket(seq.predicted) == self.bucket(first)
            if len(chunks) >= size or not same_bucket or not engine.can_admit(seq, extra_blocks=sum(engine.blocks_for(s.prefill_left) for s, _ in chunks)):
                break
            chunks.append((seq, seq.prefill_left))
        # The batch stops at its longest prediction (the prefill gives the first token).
        engine.batch_limit = max((max(s.predicted - s.generated - 1, 1) for s, _ in chunks), default=0)
        return Iteration(prefill=chunks)


class Uellm(Policy):
    """UELLM's SLO-ODBS batching (He et al. 2024): the queue is sorted by 1 x SLO + 0.5 x
    predicted length; a request joins the current batch while it has fewer than
    `max_batch` members and (its predicted length - the batch's longest) x (size + 1) x 1.2
    <= `waste_tokens` (padding waste); otherwise it opens the next batch. Batches run as
    static batches. SLO is the end-to-end target in seconds (0 when none)."""

    name = "uellm"
    keeps_finished = True
    max_batch = 10
    waste_tokens = 15000
    options = {"max_batch": (1, None), "waste_tokens": (0, None)}

    def queue_key(self, seq) -> float:
        slo = seq.e2e_target if seq.e2e_target != float("inf") else 0.0
        return 1.0 * slo + 0.5 * seq.predicted

    def select(self, engine) -> Iteration:
        if engine.running:
            return Iteration(decode=list(engine.decoding()))
        chunks, longest = [], 0
        for seq in engine.waiting_in_order():
            size = len(chunks)
            waste = (seq.predicted - longest) * (size + 1) * 1.2
            if size >= min(self.max_batch, engine.limits.max_num_seqs) or (chunks and waste > self.waste_tokens):
                break
            if not engine.can_admit(seq, extra_blocks=sum(engine.blocks_for(s.prefill_left) for s, _ in chunks)):
                break
            chunks.append((seq, seq.prefill_left))
            longest = max(longest, seq.predicted)
        return Iteration(prefill=chunks)


class Slai(Policy):
    """SLAI (Bari et al. 2025): each iteration fills a budget of `budget_tokens` tokens with
    at most `max_decodes` decodes, in this order: decodes past their last schedulable time
    (last token + TBT target - offset x mean iteration time; offset 5, or 10 when KV use is
    at least 96%), paused partial prefills, new prefills shortest prompt first, the other
    decodes. Requests without a TBT target are never urgent."""

    name = "slai"
    stable = False  # the choice changes with the clock, so no fast-forward
    budget_tokens = 512
    max_decodes = 128
    offset = 5.0
    high_kv_offset = 10.0
    options = {"budget_tokens": (1, None), "max_decodes": (1, None), "offset": (0, None), "high_kv_offset": (0, None)}

    def __init__(self, **values: float):
        super().__init__(**values)
        self.mean_iteration_s = 0.05

    def select(self, engine) -> Iteration:
        budget = self.budget_tokens
        kv_use = 1 - engine.free_blocks / max(engine.total_blocks, 1)
        offset = self.high_kv_offset if kv_use >= 0.96 else self.offset
        decoding = list(engine.decoding())
        urgent = [s for s in decoding if s.last_token + s.tbt_target - offset * self.mean_iteration_s <= engine.clock]
        decode = urgent[: min(self.max_decodes, budget)]
        budget -= len(decode)
        chunks, extra, slots = [], 0, engine.limits.max_num_seqs - len(engine.running)
        for seq in engine.partial_prefills():
            if budget <= 0:
                break
            tokens = min(seq.prefill_left, budget)
            chunks.append((seq, tokens))
            budget -= tokens
        for seq in sorted(engine.waiting, key=lambda s: (s.prefill_left, s.queue_key)):
            if budget <= 0 or slots <= 0 or not engine.can_admit(seq, extra_blocks=extra):
                break
            tokens = min(seq.prefill_left, budget)
            chunks.append((seq, tokens))
            budget -= tokens
            slots -= 1
            extra += engine.blocks_for(seq.prefill_left)
        chosen = set(decode)
        rest = [s for s in decoding if s not in chosen]
        decode += rest[: max(min(self.max_decodes - len(decode), budget), 0)]
        return Iteration(prefill=chunks, decode=decode)

    def observe(self, duration_s: float) -> None:
        # Running mean of iteration times (exponential, weight 0.1).
        self.mean_iteration_s += 0.1 * (duration_s - self.mean_iteration_s)


class Hybrid(Policy):
    """The hybrid offline-online paper's online rule (Pang et al. 2025; the exact rule is not
    public, this is our reading). Before each iteration, inserting the waiting prompts that
    fit (a vLLM-style prefill) is weighed:

        cost  = prefill_s x B / B_max                      replica time of the B running decodes it stalls
        value = lambda x sum_c predicted_c x t_full / B_max  decode work the filled slots bring in

    with t_full the iteration time of a full batch of B_max = max_num_seqs and lambda
    (`lagrange`) the multiplier pricing filled slots against the makespan. The prefill
    preempts decoding when value >= cost, or when nothing decodes."""

    name = "hybrid"
    lagrange = 1.0
    options = {"lagrange": (0, None)}

    def select(self, engine) -> Iteration:
        candidate = Vllm().select(engine)
        decode = list(engine.decoding())
        if not candidate.prefill or not decode:
            return candidate if candidate.prefill else Iteration(decode=decode)
        full = engine.limits.max_num_seqs
        t_full = engine.decode_time_s(full, full * max(s.kv_tokens for s in decode))
        cost = engine.prefill_time_s(candidate.prefill) * len(decode) / full
        value = self.lagrange * sum(seq.predicted for seq, _ in candidate.prefill) * t_full / full
        return candidate if value >= cost else Iteration(decode=decode)


POLICIES = {cls.name: cls for cls in (Vllm, Sarathi, Orca, Static, S3, Uellm, Slai, Hybrid)}
