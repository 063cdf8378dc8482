"""Prefix groups: requests that share a prompt prefix, as the prefix-aware planner sees them.

From the prefix units of `optimizer.traces.prefixes` (blocks of B tokens; U_u requests use
unit u), with n requests on m replicas:

- A unit is *common* when more than n / m requests use it (a system prompt, a few-shot
  preamble): more than a replica's fair share holds it, so every replica computes it once
  whatever the plan, and no plan can keep those requests together.
- A request's *group* is the first of its units that is not common, when another request
  uses it too (the root of its branch of the prefix tree: one prompt's samples, one
  conversation's turns); otherwise it is alone.
- A group's shared tokens s_g: the tokens of the distinct non-common units that at least two
  of its members use. A replica that runs members of g computes them once; a group split
  over q replicas computes them q times.
- A request's reusable tokens r_j: its common units' tokens plus those of its units that
  another member of its group uses, capped at B floor((p_j - 1) / B) (one token is always
  computed). It computes at least p_j - r_j prompt tokens itself.

Planning works then price a prompt token at pi_k = (sum of the prefill estimates on kind k) /
(sum of prompt tokens): w'_jk = w_jk - pi_k r_j per request, pi_k s_g per group on a
replica, pi_k (common tokens) once per replica (`optimizer.planning.prefix_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.traces.prefixes import Units


@dataclass(frozen=True)
class Groups:
    """Prefix groups of a request table (module docstring)."""

    of_request: np.ndarray  # group index per request, -1 when alone
    shared_tokens: np.ndarray  # s_g per group
    reusable_tokens: np.ndarray  # r_j per request
    common_tokens: int  # tokens of every common unit, computed once per replica

    @property
    def num_groups(self) -> int:
        return len(self.shared_tokens)

    def members(self, g: int) -> np.ndarray:
        return np.flatnonzero(self.of_request == g)


def prefix_groups(units: Units, prompt_tokens: np.ndarray, num_replicas: int) -> Groups:
    """Groups, shared and reusable tokens of the module docstring."""
    n, block = len(units.chains), units.block_tokens
    users = np.zeros(units.num_units, dtype=np.int64)
    for chain in units.chains:
        for unit, _, _ in chain:
            users[unit] += 1
    common = users > n / max(num_replicas, 1)
    roots = np.full(n, -1, dtype=np.int64)
    for j, chain in enumerate(units.chains):
        root = next((unit for unit, _, _ in chain if not common[unit]), -1)
        if root >= 0 and users[root] >= 2:
            roots[j] = root
    # Groups numbered in order of first appearance, so plans do not depend on unit ids.
    index: dict[int, int] = {}
    for root in roots.tolist():
        if root >= 0 and root not in index:
            index[root] = len(index)
    of_request = np.array([index.get(root, -1) for root in roots.tolist()], dtype=np.int64)
    # Units used by at least two members of a group.
    per_group: dict[int, dict[int, int]] = {}
    for j, chain in enumerate(units.chains):
        g = int(of_request[j])
        if g >= 0:
            counts = per_group.setdefault(g, {})
            for unit, _, _ in chain:
                if not common[unit]:
                    counts[unit] = counts.get(unit, 0) + 1
    shared = np.zeros(len(index), dtype=np.int64)
    for g, counts in per_group.items():
        shared[g] = sum(int(units.blocks[u]) for u, c in counts.items() if c >= 2) * block
    reusable = np.zeros(n, dtype=np.int64)
    common_blocks = 0
    seen_common: set[int] = set()
    for j, chain in enumerate(units.chains):
        g = int(of_request[j])
        blocks = 0
        for unit, start, end in chain:
            if common[unit]:
                blocks += end - start
                if unit not in seen_common:
                    seen_common.add(unit)
                    common_blocks += end - start
            elif g >= 0 and per_group[g].get(unit, 0) >= 2:
                blocks += end - start
        reusable[j] = min(blocks, (int(prompt_tokens[j]) - 1) // block) * block
    return Groups(of_request, shared, reusable, common_blocks * block)
