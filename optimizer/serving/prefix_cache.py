"""A replica's prefix cache: KV blocks of prompt prefixes kept for later requests, as vLLM's
automatic prefix caching keeps them.

Blocks come in units (`optimizer.traces.prefixes.prefix_units`: runs of full blocks that
requests share or not as a whole). A unit is *cached* from the iteration whose prefill chunk
covers it (vLLM V1 caches blocks as it schedules them, so a later request of the same
iteration reuses them) until it is evicted; it is *referenced* while a running sequence uses it.

- Hit: a request being admitted walks its units in prompt order while they are cached; it
  reuses h = min(matched blocks, floor((need - 1) / B)) blocks (B tokens each), at least one
  token being computed to sample from (vLLM recomputes the last block of a fully cached
  prompt). Its prefill starts at h B tokens, so it computes need - h B tokens and their
  attention sum((P + L)^2 - P^2) from P = h B.
- Capacity: cached blocks share the KV cache with running sequences. A referenced block is
  used once however many sequences hold it; an unreferenced one counts as free (vLLM keeps
  it in the free-block queue) until a new allocation needs it. So
  free = total - sum(private blocks of running sequences) - referenced cached blocks, and
  whenever the blocks of unreferenced units exceed the free blocks, units are evicted, least
  recently released first; a released request's units go to the back tail first, so a
  chain loses its tail before its head (vLLM frees a request's blocks in reverse order).
  Evictions are applied at iteration boundaries (the engine calls `trim` as an iteration
  ends), not between two admissions of one iteration.
- A unit computed while another running request computes the same unit is kept private
  by the second (vLLM keeps such duplicates too); only the first copy is cached.

Counters per replica: prompt tokens looked up at admissions (need, recomputation after a
preemption included), tokens served from the cache (tokens saved), blocks evicted.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class PrefixCache:
    """Cached units of one replica (see the module docstring)."""

    __slots__ = ("size", "refs", "lru", "evictable_blocks", "referenced_blocks", "block_tokens",
                 "lookup_tokens", "hit_tokens", "evicted_blocks")

    def __init__(self, unit_blocks: np.ndarray, block_tokens: int):
        self.size = unit_blocks.tolist()
        self.block_tokens = block_tokens
        self.refs: dict[int, int] = {}  # cached unit -> running sequences holding it
        self.lru: OrderedDict[int, None] = OrderedDict()  # unreferenced cached units, evicted first first
        self.evictable_blocks = 0
        self.referenced_blocks = 0
        self.lookup_tokens = 0
        self.hit_tokens = 0
        self.evicted_blocks = 0

    def match(self, units: tuple, need_tokens: int) -> tuple[int, int]:
        """(blocks a request needing `need_tokens` would reuse, blocks of those that are now
        unreferenced and would leave the free pool)."""
        cap = (need_tokens - 1) // self.block_tokens
        hit = taken = 0
        refs = self.refs
        for unit, start, end in units:
            if start >= cap or unit not in refs:
                break
            hit = min(end, cap)
            if not refs[unit]:
                taken += self.size[unit]
        return hit, taken

    def acquire(self, seq, hit_blocks: int) -> int:
        """Reference the units of the first `hit_blocks` blocks; returns the blocks taken
        from the free pool (those that were unreferenced)."""
        taken = 0
        for unit, start, end in seq.units:
            if start >= hit_blocks:
                break
            if not self.refs[unit]:
                del self.lru[unit]
                size = self.size[unit]
                self.evictable_blocks -= size
                self.referenced_blocks += size
                taken += size
            self.refs[unit] += 1
            seq.held.append(unit)
            # Blocks past the hit (a fully cached prompt recomputes its last block) are the sequence's own.
            seq.shared_blocks += min(end, hit_blocks) - start
            seq.next_unit += 1
        self.lookup_tokens += seq.prefill_need
        self.hit_tokens += hit_blocks * self.block_tokens
        return taken

    def peek(self, seq) -> int:
        """A waiting sequence's hit if it were admitted now: sets what it has left to prefill,
        returns the blocks it would not need from the free pool."""
        hit, taken = self.match(seq.units, seq.prefill_need)
        seq.prefilled = hit * self.block_tokens
        return hit - taken

    def admit(self, seq) -> int:
        """A sequence is admitted: it starts after its hit. Returns the blocks to give back to the
        free pool (the engine took blocks for its whole prompt; the hit ones are shared)."""
        if not seq.units:
            self.lookup_tokens += seq.prefill_need
            return 0
        hit, _ = self.match(seq.units, seq.prefill_need)
        seq.prefilled = seq.kv_tokens = hit * self.block_tokens
        seq.cached_tokens += seq.prefilled
        return hit - self.acquire(seq, hit)

    def schedule(self, seq, tokens: int) -> tuple:
        """A prefill chunk is scheduled: it shrinks to what the hit left, and the units it covers
        are cached now. Returns the chunk."""
        tokens = min(tokens, seq.prefill_left)
        if seq.next_unit < len(seq.units):
            self.register(seq, seq.prefilled + tokens)
        return seq, tokens

    def leave(self, seq) -> int:
        """A sequence finishes or is preempted: the blocks it frees, its own and the cached ones
        nobody else holds (those stay cached, evictable)."""
        if not seq.held:
            seq.next_unit = 0
            return seq.blocks
        return seq.blocks - seq.shared_blocks + self.release(seq)

    def register(self, seq, prefilled_tokens: int) -> None:
        """Cache the units a prefill up to `prefilled_tokens` covers in full (as it is scheduled)."""
        units, computed = seq.units, prefilled_tokens // self.block_tokens
        while seq.next_unit < len(units) and units[seq.next_unit][2] <= computed:
            unit = units[seq.next_unit][0]
            seq.next_unit += 1
            if unit in self.refs:
                continue  # computed twice at once: this copy stays private
            size = self.size[unit]
            self.refs[unit] = 1
            self.referenced_blocks += size
            seq.held.append(unit)
            seq.shared_blocks += size

    def release(self, seq) -> int:
        """Drop the sequence's references; returns the blocks that became unreferenced (free)."""
        freed = 0
        for unit in reversed(seq.held):
            self.refs[unit] -= 1
            if not self.refs[unit]:
                self.lru[unit] = None
                size = self.size[unit]
                self.evictable_blocks += size
                self.referenced_blocks -= size
                freed += size
        seq.held = []
        seq.shared_blocks = 0
        seq.next_unit = 0
        return freed

    def trim(self, free_blocks: int) -> None:
        """Evict least recently released units until the unreferenced ones fit in the free blocks."""
        while self.evictable_blocks > max(free_blocks, 0) and self.lru:
            unit, _ = self.lru.popitem(last=False)
            del self.refs[unit]
            size = self.size[unit]
            self.evictable_blocks -= size
            self.evicted_blocks += size

    def clear(self) -> None:
        """Lose everything (the replica failed)."""
        self.refs.clear()
        self.lru.clear()
        self.evictable_blocks = self.referenced_blocks = 0


def cache_counters(engines) -> dict[str, list] | None:
    """Per-replica columns of the cache counters, or None when no replica has a cache."""
    if not any(e.cache is not None for e in engines):
        return None
    caches = [e.cache for e in engines]
    return {
        "prompt_tokens_looked_up": [c.lookup_tokens if c else 0 for c in caches],
        "cached_prompt_tokens": [c.hit_tokens if c else 0 for c in caches],
        "prefix_hit_rate": [c.hit_tokens / c.lookup_tokens if c and c.lookup_tokens else 0.0 for c in caches],
        "evicted_blocks": [c.evicted_blocks if c else 0 for c in caches],
    }


def cache_summary(replicas) -> dict[str, object]:
    """The cache part of a simulation's summary (empty without a cache): fleet hit rate,
    tokens saved, evictions, and per replica hit rate, tokens saved and evicted blocks."""
    if "cached_prompt_tokens" not in replicas:
        return {}
    looked_up = int(replicas["prompt_tokens_looked_up"].sum())
    saved = int(replicas["cached_prompt_tokens"].sum())
    return {
        "prefix_cache": {
            "hit_rate": saved / looked_up if looked_up else 0.0,
            "tokens_saved": saved,
            "evicted_blocks": int(replicas["evicted_blocks"].sum()),
            "per_replica": {
                str(name): {"hit_rate": float(rate), "tokens_saved": int(tokens), "evicted_blocks": int(evicted)}
                for name, rate, tokens, evicted in zip(replicas["replica"], replicas["prefix_hit_rate"],
                                                       replicas["cached_prompt_tokens"], replicas["evicted_blocks"])
            },
        }
    }
