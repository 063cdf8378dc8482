"""Latency targets (SLOs): fixed or scaled with a request's length, and which are achievable.

A target is written `BASE[+PER/token]` with units s or ms, e.g. `2s`, `0.5s+1ms/token`,
`60` (seconds). For request j with prompt p_j and output o_j tokens:

    TTFT target = base + per x p_j        (prefill grows with the prompt)
    TBT target  = base + per x 0          (a per-token figure already)
    E2E target  = base + per x o_j        (decode grows with the output)

A fixed 2 s TTFT is physically impossible for a long prompt: a 100k-token prefill alone
takes longer on any GPU here. A request's target is *achievable* when the request, run
alone on the fastest replica that can hold it, meets it:

    TTFT alone = prefill(p_j)                             one pass, nothing else running
    E2E alone  = prefill(p_j) + (o_j - 1) x decode(1, context)   = min_latency of the estimates
    TBT alone  = (E2E alone - TTFT alone) / (o_j - 1)

(the estimates' least latency, `optimizer.fleet.estimates`, is a lower bound of E2E under
any schedule). Attainment is reported over every request with a target, and over the
achievable ones: no dispatch can do better than 100% of the latter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError

COLUMNS = ("ttft_target_s", "tbt_target_s", "e2e_target_s")
_TERM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?"


@dataclass(frozen=True)
class Target:
    """base_s + per_token_s x (the request's tokens that the target scales with)."""

    base_s: float
    per_token_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.base_s:g}s" + (f"+{self.per_token_s * 1e3:g}ms/token" if self.per_token_s else "")


def parse_target(text: str | float | Target, what: str = "target") -> Target:
    """`2`, `2s`, `500ms`, `0.5s+1ms/token` (or a number of seconds, or a Target)."""
    if isinstance(text, Target):
        return text
    if isinstance(text, (int, float)):
        target = Target(float(text))
    else:
        match = re.fullmatch(rf"\s*{_TERM}\s*(?:\+\s*{_TERM}\s*/\s*tok(?:en)?s?)?\s*", str(text))
        if not match:
            raise OptimizerError(f"The {what} {text!r} is not SECONDS or BASE+PER/token (e.g. 2s, 500ms, 0.5s+1ms/token).")
        scale = lambda unit: 1e-3 if unit == "ms" else 1.0  # noqa: E731
        per = float(match[3]) * scale(match[4]) if match[3] is not None else 0.0
        target = Target(float(match[1]) * scale(match[2]), per)
    if not (target.base_s > 0 or target.per_token_s > 0) or target.base_s < 0 or target.per_token_s < 0:
        raise OptimizerError(f"The {what} must be greater than 0 seconds, got {text}.")
    return target


def with_targets(requests: pd.DataFrame, *, ttft=None, tbt=None, e2e=None) -> pd.DataFrame:
    """The trace with these targets filled in where a request has none of its own (each a
    number of seconds, a `BASE+PER/token` text, a `Target`, or None)."""
    table = requests
    for column, given, tokens in (("ttft_target_s", ttft, "prompt_tokens"), ("tbt_target_s", tbt, None), ("e2e_target_s", e2e, "output_tokens")):
        if given is None:
            continue
        target = parse_target(given, f"{column.removesuffix('_target_s').upper()} target")
        count = requests[tokens].fillna(0).to_numpy(dtype=float) if tokens and target.per_token_s else 0.0
        values = pd.Series(target.base_s + target.per_token_s * count, index=requests.index, dtype=float)
        if table is requests:
            table = requests.copy()
        table[column] = table[column].fillna(values) if column in table else values
    return table


def alone_latencies(requests: pd.DataFrame, estimates, profiles_by_kind) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TTFT, TBT, E2E) of each request alone on its fastest eligible replica kind (seconds);
    `profiles_by_kind`: the profile of each of `estimates.kinds`, in order."""
    prompt = requests["prompt_tokens"].to_numpy(dtype=float)
    ttft = np.column_stack([np.asarray(p.prefill_time_ms(prompt), dtype=float) * 1e-3 for p in profiles_by_kind])
    ttft = np.where(estimates.eligible, ttft, np.inf)
    e2e = np.where(estimates.eligible, np.maximum(estimates.min_latency_s, ttft), np.inf)
    output = requests["output_tokens"].fillna(1).to_numpy(dtype=float)
    tbt = np.where(estimates.eligible, (e2e - ttft) / np.maximum(output - 1, 1)[:, None], np.inf)
    return ttft.min(axis=1), tbt.min(axis=1), e2e.min(axis=1)


def achievable(requests: pd.DataFrame, estimates, profiles_by_kind) -> np.ndarray:
    """True where every target the request has is met when it runs alone (module docstring)."""
    alone = dict(zip(COLUMNS, alone_latencies(requests, estimates, profiles_by_kind)))
    ok = np.ones(len(requests), dtype=bool)
    for column in COLUMNS:
        if column in requests:
            target = requests[column].to_numpy(dtype=float)
            ok &= np.isnan(target) | (alone[column] <= target)
    return ok
