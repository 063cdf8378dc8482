"""Per-replica batching policies: what one iteration of a replica runs.

Each policy is a small class with one method, `select(engine)`, returning the iteration to
run next: the prefill chunks (sequence, tokens) and whether the running sequences decode.
The engine (`optimizer.simulator`) charges the iteration with the performance model,
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
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass
class Iteration:
    """One iteration: prefill chunks (sequence, tokens) and the sequences that decode."""

    prefill: list = field(default_factory=list)
    decode: list = field(default_factory=list)


class Vllm:
    name = "vllm"

    def select(self, engine) -> Iteration:
        chunks, budget = [], engine.limits.max_num_batched_tokens
        slots = engine.limits.max_num_seqs - len(engine.running)
        for seq in engine.waiting_in_order():
            need = seq.prefill_left
            # A prompt longer than the budget runs alone (vLLM requires budget >= model length).
            too_long = need > budget and bool(chunks)
            if slots <= 0 or too_long or not engine.can_admit(seq, extra_blocks=sum(engine.blocks_for(s.prefill_left) for s, _ in chunks)):
                break
            chunks.append((seq, need))
            budget -= need
            slots -= 1
        if chunks:
            return Iteration(prefill=chunks)
        return Iteration(decode=list(engine.decoding()))


class Sarathi:
    name = "sarathi"

    def select(self, engine) -> Iteration:
        decode = list(engine.decoding())
        budget = engine.chunk_tokens - len(decode)
        return Iteration(prefill=_chunks(engine, budget), decode=decode)


class Orca:
    name = "orca"

    def select(self, engine) -> Iteration:
        chunks = _chunks(engine, engine.chunk_tokens)
        budget = engine.chunk_tokens - sum(tokens for _, tokens in chunks)
        decode = list(engine.decoding())[: max(budget, 0)]
        return Iteration(prefill=chunks, decode=decode)


class Static:
    name = "static"

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


POLICIES = {cls.name: cls for cls in (Vllm, Sarathi, Orca, Static)}
