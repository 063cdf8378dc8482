"""How many sequences a replica really runs at once: a fluid model of each replica's backlog.

Little's law alone (concurrency = arrival rate x latency) ignores queueing: when work
arrives faster than a replica serves it at a small batch, requests wait, the batch fills
up to the KV and engine limits, and every request's share of an iteration shrinks. A plan
priced at the small batch overestimates every request's work (the symptom: a "work
utilization" above 100%). So the batch is derived from the backlog the replica will see.

Fluid backlog model, per replica of kind k (all quantities per replica):

- Arrivals: the trace's requests, cut into buckets of width dt; a replica of kind k gets
  the share mu_k / sum_r mu_k(r) of each bucket (mu_k its throughput at its largest batch
  B_cap, below), as a plan that balances finish times would give it.
- A request is the trace's average one on this kind: p_bar seconds of prefill work (the
  replica pauses its batch for it) and o_bar decode steps.
- The batch is capped: B_cap = min(max_num_seqs, floor(kv_capacity / c_bar), argmin_B
  fix(B) / B, ceil(B_pf)). B_pf is what prefill lets through: a chunking engine runs
  `chunk` tokens an iteration, B decodes and chunk - B prompt tokens, so a replica never
  short of prompts to prefill starts (chunk - B) / P_bar requests an iteration, each
  decoding o_bar steps, and decodes B_pf = o_bar chunk / (P_bar + o_bar) sequences at once
  (P_bar the mean prompt tokens): prompt-heavy traffic (code assistants) never fills the
  batch, however long the queue.
- With N(t) requests in the system the replica decodes B(t) = min(N(t), B_cap) sequences
  (at least 1 while N > 0). Each advances one token per iteration, decode(B, B c_bar), and
  each admission pauses the batch p_bar; a request's sojourn is therefore
  L(B) = o_bar decode(B, B c_bar) + B p_bar, and the replica completes x(B) = B / L(B)
  requests per second (Little's law inside the batch).
- dN/dt = arrivals(t) - x(B(t)), N >= 0, stepped over the buckets; what is left queued
  beyond a full batch at the last arrival is served at B_cap afterwards.
- Busy time a request costs at batch B is p_bar + o_bar fix(B) / B (+ its own context), so
  the batch the estimates must use is the one whose per-step share fix(B*) / B* equals
  the average share over the run, weighted by completions:

      s_eff = sum_t x(B(t)) dt fix(B(t)) / B(t)  /  sum_t x(B(t)) dt
      B* = the smallest integer B <= B_cap with fix(B) / B <= s_eff.

  Under overload N grows past B_cap and B* = B_cap; under light load B* is the small batch
  the arrivals sustain. An offline batch (every arrival at once) runs full batches until its
  queue is shorter than B_cap: B* = min(B_cap, ceil(n / m)), and the drain term of the
  estimates charges the shrinking tail.

Assumption: the fluid mean ignores the arrival process's variance within a bucket, so it
underestimates the batch a little under light, bursty load (where it matters least: a
lightly loaded replica's makespan is its last request's chain, not its work).
"""

from __future__ import annotations

import numpy as np

from optimizer.fleet.profile import Profile

MS = 1e-3
#: Arrival buckets of the fluid model over the trace's span.
NUM_BUCKETS = 4096


def fluid_batch(
    arrival_s: np.ndarray,
    prefill_s: np.ndarray,
    steps: np.ndarray,
    mean_context_tokens: float,
    profile: Profile,
    cap: int,
    share: float,
) -> int:
    """B* of the module docstring for one replica kind.

    Args:
        arrival_s: every request's arrival (the trace's, not yet split among replicas).
        prefill_s: every request's prefill work on this kind (seconds).
        steps: every request's decode steps (output tokens - 1).
        mean_context_tokens: c_bar, the context of a decoding sequence averaged over steps.
        cap: B_cap, the engine, KV and prefill limit (`batch_cap`).
        share: the share of the arrivals one replica of this kind receives.
    """
    n = len(arrival_s)
    if n == 0:
        return 1
    span = float(arrival_s.max() - arrival_s.min())
    if span <= 0:
        return max(1, min(cap, int(np.ceil(n * share - 1e-9))))
    p_bar = float(np.mean(prefill_s))
    o_bar = max(float(np.mean(steps)), 1e-9)
    batches = np.arange(1, cap + 1, dtype=float)
    fixed_s = np.asarray(profile.decode_fixed_ms(batches), dtype=float) * MS
    share_s = fixed_s / batches
    decode_s = fixed_s + profile.decode_ms_per_context_token * MS * batches * mean_context_tokens

    dt = span / NUM_BUCKETS
    edges = arrival_s.min() + dt * np.arange(1, NUM_BUCKETS + 1)
    arrivals = np.bincount(np.minimum(np.searchsorted(edges, arrival_s, side="right"), NUM_BUCKETS - 1),
                           minlength=NUM_BUCKETS) * share
    in_system, served, weighted = 0.0, 0.0, 0.0
    for g in range(NUM_BUCKETS):
        in_system += arrivals[g]
        if in_system <= 0:
            continue
        batch = min(max(in_system, 1.0), float(cap))
        rate = batch / (o_bar * float(np.interp(batch, batches, decode_s)) + batch * p_bar)
        done = min(in_system, rate * dt)
        in_system -= done
        served += done
        weighted += done * float(np.interp(batch, batches, share_s))
    # After the last arrival, what is queued beyond a full batch is served at B_cap; the
    # last batch's shrinking tail is the estimates' drain term, not part of B*.
    beyond = max(in_system - cap, 0.0)
    served += beyond
    weighted += beyond * share_s[-1]
    effective = weighted / served if served > 0 else share_s[0]
    return int(min(cap, 1 + np.searchsorted(-share_s, -effective * (1 + 1e-12))))


def batch_cap(max_num_seqs: int, kv_capacity_tokens: int, mean_context_tokens: float, best_share_batch: int,
              chunk_tokens: int, mean_prompt_tokens: float, mean_steps: float) -> int:
    """B_cap = min(max_num_seqs, floor(kv_capacity / c_bar), argmin_B fix(B) / B, ceil(B_pf))."""
    prefill_limit = mean_steps * chunk_tokens / max(mean_prompt_tokens + mean_steps, 1e-9)
    return int(max(1, min(max_num_seqs, kv_capacity_tokens // max(int(mean_context_tokens), 1), best_share_batch,
                          int(np.ceil(prefill_limit)))))


def replica_throughput(prefill_s: np.ndarray, steps: np.ndarray, mean_context_tokens: float, profile: Profile, cap: int) -> float:
    """mu_k: requests per second one replica completes at its largest batch, x(B_cap)."""
    o_bar = max(float(np.mean(steps)), 1e-9) if len(steps) else 1.0
    p_bar = float(np.mean(prefill_s)) if len(prefill_s) else 0.0
    decode = float(profile.decode_time_ms(float(cap), cap * mean_context_tokens)) * MS
    return cap / (o_bar * decode + cap * p_bar)
