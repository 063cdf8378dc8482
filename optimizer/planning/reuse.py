"""Least work with prefix reuse: what no schedule can avoid computing when replicas cache prefixes.

With a prefix cache (`optimizer.serving.prefix_cache`) a request's prefill skips the cached
blocks of its prompt, so the per-request least works of `optimizer.fleet.estimates`
overstate the work. This module prices each request's unavoidable part and, separately,
the shared blocks that must be computed at least once somewhere.

Notation, per replica kind k with blocks of B tokens (`optimizer.traces.prefixes.prefix_units`):
request j has prompt p_j, o_j output tokens, its units u = [s_u, e_u) (blocks), and the most
blocks it can ever find cached at its first admission

    c_j = min(e_last(j), floor((p_j - 1) / B))          (at least one token is computed).

- Mandatory tokens: at its first admission (generated = 0, need = p_j) j computes every token
  from its hit h_j <= B c_j on: at least m_j = p_j - B c_j tokens, with attention at least
  a3 (p_j^2 - (B c_j)^2).
- Shared blocks: a block b of unit u lying below c_j for *every* request j holding u is
  cappable for all of them, so the first request to hold it (nobody had it: no cache could
  serve it) computed it outside every mandatory range. Per unit, that is
  x_u = B max(0, min(e_u, min_{j holds u} c_j) - s_u) tokens, each computed at least once.
- Total prompt tokens computed >= sum_j m_j + sum_u x_u: the two sets of computations are
  disjoint (mandatory tokens lie at positions >= B c_j of j's first admission, shared ones
  at positions < B c_i of the request i that computed them, and distinct units or blocks
  are distinct computations). Preemptions and failures only add computations.

Prices: with (alpha, beta) the lower-bound token prices of `optimizer.fleet.token_costs` for
this mix (P* = sum m_j + sum x_u prompt tokens, D = sum (o_j - 1) decode steps), every
iteration costs at least alpha x its prompt tokens + beta x its decodes + its attention,
chunk and context terms, so

    w'_jk = a4 + a3 (p_j^2 - (B c_j)^2) + alpha m_j + beta (o_j - 1) + d2 ((o_j - 1) p_j + (o_j - 1) o_j / 2)
    v_uk  = alpha x_u                                   (a job that runs on some replica)
    l'_jk = a4 + a3 (p_j^2 - (B c_j)^2) + alpha_max m_j + (o_j - 1) fix(1) + d2 (...)

are valid least works and latencies: the bounds of `optimizer.planning.bounds` hold with
w' and the jobs v added (the work bound) and with l' (the chain bound). A shared block's job
may run on any kind that serves one of its requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.fleet import token_costs
from optimizer.fleet.cluster import Cluster
from optimizer.fleet.estimates import Estimates
from optimizer.fleet.profile import Profile
from optimizer.fleet.sources import profile_for
from optimizer.traces.prefixes import cappable_blocks, prefix_chains, prefix_units

MS = 1e-3


@dataclass(frozen=True)
class Reuse:
    """Least works with reuse: per request and kind (w', l'), and the shared-block jobs."""

    min_work_s: np.ndarray  # (requests, kinds)
    min_latency_s: np.ndarray  # (requests, kinds)
    shared_work_s: np.ndarray  # (units, kinds), inf where no kind of the unit's requests
    #: Prompt tokens no schedule avoids computing (sum m_j + sum x_u), per kind.
    unique_prompt_tokens: np.ndarray  # (kinds,)


def reuse_work(requests: pd.DataFrame, cluster: Cluster, estimates: Estimates, output_tokens: np.ndarray,
               *, profiles: dict | None = None) -> Reuse:
    """The module docstring's w', l' and v for every kind of the cluster."""
    prompt = requests["prompt_tokens"].to_numpy(dtype=float)
    steps = np.asarray(output_tokens, dtype=float) - 1
    own_context = steps * prompt + steps * (steps + 1) / 2  # context tokens over the decode steps
    chains = prefix_chains(requests)
    kinds = cluster.first_of_each_kind
    n, num_kinds = len(prompt), len(kinds)
    work, latency = np.empty((n, num_kinds)), np.empty((n, num_kinds))
    per_kind, unique = [], np.empty(num_kinds)
    longest_prefill = int(np.sort(prompt)[::-1][: max(r.limits.max_num_seqs for r in kinds)].sum()) if n else 0
    for k, replica in enumerate(kinds):
        profile: Profile = profile_for(replica, profiles)
        block = replica.limits.block_size_tokens
        units = prefix_units(chains, block)
        cap, shared_blocks = cappable_blocks(units, prompt)
        reused = cap * float(block)
        mandatory = prompt - reused
        unique[k] = float(mandatory.sum() + shared_blocks.sum() * block)
        budget = replica.limits.max_num_batched_tokens
        alpha, beta = token_costs.lower_bound_prices(profile, budget, replica.limits.max_num_seqs, longest_prefill,
                                                     unique[k], float(steps.sum()))
        alpha_max = token_costs.least_prefill_price_ms(profile, budget, longest_prefill)
        own_ms = profile.prefill_ms_per_prompt + profile.prefill_attention_ms_per_token_sq * (prompt**2 - reused**2)
        context_ms = profile.decode_ms_per_context_token * own_context
        work[:, k] = (own_ms + alpha * mandatory + beta * steps + context_ms) * MS
        latency[:, k] = (own_ms + alpha_max * mandatory + steps * float(profile.decode_fixed_ms(1.0)) + context_ms) * MS
        per_kind.append((units, shared_blocks * float(block) * alpha * MS))
    return Reuse(work, latency, _shared_jobs(per_kind, estimates.eligible), unique)


def _shared_jobs(per_kind: list, eligible: np.ndarray) -> np.ndarray:
    """Shared-block jobs (units x kinds), inf on kinds serving none of the unit's requests.
    Kinds with different block sizes cut prompts into different blocks; such a fleet gets
    no shared jobs (leaving jobs out only lowers the bound)."""
    num_kinds = len(per_kind)
    if len({units.block_tokens for units, _ in per_kind}) != 1:
        return np.zeros((0, num_kinds))
    units = per_kind[0][0]
    where = np.zeros((units.num_units, num_kinds), dtype=bool)
    for j, chain in enumerate(units.chains):
        for unit, _, _ in chain:
            where[unit] |= eligible[j]
    table = np.column_stack([work for _, work in per_kind]) if units.num_units else np.zeros((0, num_kinds))
    table = np.where(where, table, np.inf)
    return table[(table > 0).all(axis=1)]  # units no request can reuse cost nothing extra
