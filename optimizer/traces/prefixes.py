"""Shared prompt prefixes: which requests begin with the same tokens, and how long that start is.

A request's prefix structure is a chain of segments (key, end_tokens), ends increasing: the
key names the first end_tokens tokens of the prompt, so two requests whose chains hold the
same key begin with the same end_tokens tokens. It comes from three sources:

- ``hash_ids`` (Mooncake, and the native format): one id per 512-token block of the prompt,
  ceil(prompt / 512) ids, the last block possibly partial. Ids are chain hashes (equal id at
  equal position = equal prefix up to that block's end), so block i is the segment
  (id_i, 512 (i + 1)); a partial last block is never shared (engines cache full blocks).
- ``prefix_group`` (native format; or from the options below): a path of group names
  "a/b/c" with ``prefix_tokens`` "N_a N_b N_c", the tokens each level shares (increasing,
  at most the prompt). Level i is the segment (("g", "a/.../i"), N_i). A one-level group
  may leave prefix_tokens empty: its members share the shortest prompt among them.
- Declarations when loading: ``shared_prefix_tokens`` N puts every request under a level
  "shared" of N tokens (a common system prompt); ``samples_per_prompt`` K repeats every
  request K times (ids "<id>#s<k>") under a last level "<request_id>" of its whole prompt
  (K samples of one prompt, as RL rollouts draw).

`prefix_units` turns the chains into what an engine caches: with a block of B tokens,
segment i covers the full blocks floor(end_{i-1} / B) .. floor(end_i / B) - 1; that run of
blocks is one *unit* (cached, hit and evicted together: a Mooncake block is 32 blocks of 16
tokens). Units are interned per trace, so equal ids mean equal blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import TraceError

#: Tokens per hash_ids block (Mooncake's convention, used by the native format too).
HASH_BLOCK_TOKENS = 512
#: Level name that `shared_prefix_tokens` puts every request under.
SHARED_LEVEL = "shared"


def has_prefixes(requests: pd.DataFrame) -> bool:
    """True when the table says anything about shared prefixes."""
    return "hash_ids" in requests or "prefix_group" in requests


def check_hash_ids(hash_ids: pd.Series, prompt_tokens: np.ndarray, error) -> None:
    """Each request has ceil(prompt / 512) block ids; `error(message, row)` raises located."""
    counts = hash_ids.map(len).to_numpy(dtype=np.int64)
    expected = -(-np.asarray(prompt_tokens, dtype=np.int64) // HASH_BLOCK_TOKENS)
    wrong = (counts != expected) & (counts > 0)
    if wrong.any():
        row = int(np.argmax(wrong))
        raise error(f"has {counts[row]} block ids but a prompt of {int(prompt_tokens[row]):,} tokens is "
                    f"{expected[row]} blocks of {HASH_BLOCK_TOKENS} tokens (the last one possibly partial).", row)


def parse_groups(groups: pd.Series, tokens: pd.Series | None, prompt_tokens: np.ndarray, error) -> tuple[pd.Series, pd.Series]:
    """`prefix_group` paths and `prefix_tokens` ends, checked: one end per level, increasing,
    at most the prompt, and the same ends for the same group everywhere. Returns the groups
    and the ends as tuples of ints (empty for requests in no group).

    `error(message, row, column)` raises an error located at that row."""
    paths = [tuple(part.strip() for part in g.split("/")) if g else () for g in groups.tolist()]
    ends: list[tuple[int, ...]] = []
    for row, path in enumerate(paths):
        if any(not part for part in path):
            raise error(f"{groups.iloc[row]!r} has an empty level; write levels as 'a/b'.", row, "prefix_group")
        cell = "" if tokens is None else str(tokens.iloc[row]).strip()
        if not cell:
            ends.append(())
            if len(path) > 1:
                raise error(f"the group {groups.iloc[row]!r} has {len(path)} levels, so prefix_tokens needs {len(path)} numbers.", row, "prefix_tokens")
            continue
        try:
            values = tuple(int(v) for v in cell.split())
        except ValueError:
            raise error(f"{cell!r} is not a list of whole numbers of tokens.", row, "prefix_tokens") from None
        if not path:
            raise error("is set but prefix_group is empty; a prefix needs a group.", row, "prefix_tokens")
        if len(values) != len(path):
            raise error(f"has {len(values)} numbers but the group {groups.iloc[row]!r} has {len(path)} levels.", row, "prefix_tokens")
        if any(v < 1 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
            raise error(f"{cell!r} must be increasing whole numbers of at least 1, one per level.", row, "prefix_tokens")
        if values[-1] > prompt_tokens[row]:
            raise error(f"says the group shares {values[-1]:,} tokens but the prompt has only {int(prompt_tokens[row]):,}.", row, "prefix_tokens")
        ends.append(values)
    # One-level groups without ends share their shortest prompt; levels must agree everywhere.
    shortest: dict[str, int] = {}
    for row, path in enumerate(paths):
        if path and not ends[row]:
            shortest[path[0]] = min(shortest.get(path[0], int(prompt_tokens[row])), int(prompt_tokens[row]))
    seen: dict[str, tuple[int, int]] = {}  # level key -> (end, first row)
    for row, path in enumerate(paths):
        if path and not ends[row]:
            ends[row] = (shortest[path[0]],)
        for level in range(len(path)):
            key = "/".join(path[: level + 1])
            end = ends[row][level]
            first = seen.setdefault(key, (end, row))
            if first[0] != end:
                raise error(f"says group {key!r} shares {end:,} tokens, but an earlier request says {first[0]:,}.", row, "prefix_tokens")
    return pd.Series(["/".join(p) for p in paths], dtype=str), pd.Series(ends, dtype=object)


def declare(requests: pd.DataFrame, path: str, *, shared_prefix_tokens: int | None = None,
            samples_per_prompt: int | None = None) -> pd.DataFrame:
    """The request table with declared structure (see the module docstring) added."""
    if shared_prefix_tokens is None and samples_per_prompt is None:
        return requests
    table = requests.copy()
    n = len(table)
    groups = table["prefix_group"].tolist() if "prefix_group" in table else [""] * n
    ends = table["prefix_tokens"].tolist() if "prefix_tokens" in table else [()] * n
    prompt = table["prompt_tokens"].to_numpy(dtype=np.int64)
    if shared_prefix_tokens is not None:
        if shared_prefix_tokens < 1:
            raise TraceError(f"the shared prefix must be at least 1 token, got {shared_prefix_tokens}.", path=path)
        short = prompt < shared_prefix_tokens
        if short.any():
            row = int(np.argmax(short))
            raise TraceError(f"request {table['request_id'].iloc[row]!r} has a {int(prompt[row]):,}-token prompt, shorter than "
                             f"the declared shared prefix of {shared_prefix_tokens:,} tokens.", path=path, field="prompt_tokens")
        for row in range(n):
            if ends[row] and ends[row][0] <= shared_prefix_tokens:
                raise TraceError(f"request {table['request_id'].iloc[row]!r} has prefix_tokens {ends[row][0]} within the "
                                 f"declared shared prefix of {shared_prefix_tokens:,} tokens.", path=path, field="prefix_tokens")
        groups = [SHARED_LEVEL + ("/" + g if g else "") for g in groups]
        ends = [(shared_prefix_tokens, *e) for e in ends]
    if samples_per_prompt is not None:
        if samples_per_prompt < 1:
            raise TraceError(f"samples per prompt must be at least 1, got {samples_per_prompt}.", path=path)
        ids = table["request_id"].astype(str).tolist()
        for row in range(n):
            if ends[row] and ends[row][-1] >= prompt[row]:
                # The whole prompt is already a level; the samples add none.
                continue
            groups[row] = (groups[row] + "/" if groups[row] else "") + ids[row].replace("/", "_")
            ends[row] = (*ends[row], int(prompt[row]))
        k = samples_per_prompt
        table = table.loc[table.index.repeat(k)].reset_index(drop=True)
        groups = [g for g in groups for _ in range(k)]
        ends = [e for e in ends for _ in range(k)]
        sample = np.tile(np.arange(k), n).astype(str)
        table["request_id"] = table["request_id"].astype(str) + "#s" + pd.Series(sample)
    table["prefix_group"] = pd.Series(groups, dtype=str)
    table["prefix_tokens"] = pd.Series(ends, dtype=object)
    return table


def prefix_chains(requests: pd.DataFrame) -> list[tuple[tuple[object, int], ...]]:
    """Each request's segments (key, end_tokens), ends increasing (the module docstring).
    A block id's key is the id (an int), a group level's a tuple ("g", path)."""
    n = len(requests)
    prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64).tolist()
    groups: list[tuple] = [()] * n
    if "prefix_group" in requests:
        made: dict[tuple, tuple] = {}
        for row, (group, ends) in enumerate(zip(requests["prefix_group"].tolist(), requests["prefix_tokens"].tolist())):
            if group:
                if (group, ends) not in made:
                    parts = group.split("/")
                    made[group, ends] = tuple((("g", "/".join(parts[: i + 1])), int(end)) for i, end in enumerate(ends))
                groups[row] = made[group, ends]
    if "hash_ids" not in requests:
        return groups
    blocks: dict[tuple, tuple] = {}  # samples of one prompt have the same ids
    merged: dict[tuple, tuple] = {}
    chains = []
    for row, ids in enumerate(requests["hash_ids"].tolist()):
        full = min(len(ids), prompt[row] // HASH_BLOCK_TOKENS)  # a partial last block is never shared
        if (ids, full) not in blocks:
            blocks[ids, full] = tuple((int(h), HASH_BLOCK_TOKENS * (i + 1)) for i, h in enumerate(ids[:full]))
        chain = blocks[ids, full]
        if groups[row]:
            key = (groups[row], ids, full)
            if key not in merged:
                merged[key] = tuple(sorted(groups[row] + chain, key=lambda segment: segment[1]))
            chain = merged[key]
        chains.append(chain)
    return chains


@dataclass(frozen=True)
class Units:
    """What an engine with `block_tokens`-token blocks can share: per request, its units
    (unit id, first block, end block) in prompt order; per unit, its size in blocks."""

    block_tokens: int
    chains: tuple[tuple[tuple[int, int, int], ...], ...]
    blocks: np.ndarray  # (units,)

    @property
    def num_units(self) -> int:
        return len(self.blocks)


def prefix_units(chains: list[tuple[tuple[object, int], ...]], block_tokens: int) -> Units:
    """Units of `block_tokens`-token blocks (module docstring); zero-block segments drop out."""
    ids: dict[tuple[object, int, int], int] = {}
    sizes: list[int] = []
    out = []
    seen: dict[tuple, tuple] = {}  # samples of one prompt have the same chain
    for chain in chains:
        if chain in seen:
            out.append(seen[chain])
            continue
        units, done = [], 0
        for key, end in chain:
            end_block = end // block_tokens
            if end_block <= done:
                continue
            # Keyed with both ends: a key seen over other blocks is never taken for these.
            unit = ids.setdefault((key, done, end_block), len(ids))
            if unit == len(sizes):
                sizes.append(end_block - done)
            units.append((unit, done, end_block))
            done = end_block
        seen[chain] = tuple(units)
        out.append(seen[chain])
    return Units(block_tokens, tuple(out), np.asarray(sizes, dtype=np.int64))


def cappable_blocks(units: Units, prompt_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per request, the most blocks it can find cached at its first admission,
    c_j = min(its last unit's end, floor((p_j - 1) / B)); per unit u = [s_u, e_u), the blocks
    every request holding it could find cached, max(0, min(e_u, min_j c_j) - s_u), each
    computed at least once (`optimizer.planning.reuse` proves what follows from them)."""
    block = units.block_tokens
    cap = np.zeros(len(units.chains), dtype=np.int64)
    least = np.full(units.num_units, np.iinfo(np.int64).max)  # min c_j over the unit's requests
    starts = np.zeros(units.num_units, dtype=np.int64)
    ends = np.zeros(units.num_units, dtype=np.int64)
    for j, chain in enumerate(units.chains):
        if not chain:
            continue
        c = min(chain[-1][2], (int(prompt_tokens[j]) - 1) // block)
        cap[j] = c
        for unit, start, end in chain:
            least[unit] = min(least[unit], c)
            starts[unit], ends[unit] = start, end
    shared = np.maximum(np.minimum(ends, least) - starts, 0) if units.num_units else np.zeros(0, dtype=np.int64)
    return cap, shared


def reuse_summary(requests: pd.DataFrame, block_tokens: int = 16) -> dict[str, object]:
    """How much prefill an unbounded cache on one replica could save (blocks of `block_tokens`):
    the unique prefill sum_j (p_j - B c_j) + B sum_u x_u against all prompt tokens."""
    prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64)
    units = prefix_units(prefix_chains(requests), block_tokens)
    cap, shared = cappable_blocks(units, prompt)
    unique = int((prompt - cap * block_tokens).sum() + shared.sum() * block_tokens)
    total = int(prompt.sum())
    return {"block_tokens": block_tokens, "prompt_tokens": total, "unique_prompt_tokens": unique,
            "reusable_share": round(1 - unique / total, 4) if total else 0.0}
