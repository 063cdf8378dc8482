"""Performance profile: one replica kind's iteration time, in one closed form whatever its source.

The model (times in ms; every coefficient is >= 0, so more tokens or more sequences never take
less time). A prefill part runs T prompt tokens in N chunks whose attention covers S squared
tokens (a chunk of L tokens after P already prefilled adds (P + L)^2 - P^2); a decode part runs
one token for each of B sequences holding C tokens of KV cache::

    prefill(T, S, N) = a0 + a1 max(T, T_r) + a2 max(0, T - T_k) + a3 S + a4 N
    decode(B, C)     = d0 + d1 B + d2 C + d3 B^2 + d4 (1 - (1 - f)^B)
    mixed            = prefill(T + B, S, N) + decode(B, C) - phi(B)                  (T > 0 and B > 0)
    phi(B)           = min(d0 + d4 (1 - (1 - f)^B), a0 + a1 T_r)

Prefill: a0 fixed overhead; a1 per token of the weight GEMMs, memory-bound (flat) below the
roofline ridge T_r and compute-bound above it; a2 extra per token above T_k (kernel and
tiling changes, fitted); a3 attention, quadratic in each prompt; a4 per chunk.
Decode: d0 reads the weights once per iteration, d1 per sequence, d2 reads the KV cache,
d3 the super-linear growth of large batches; d4 the expert weights of a mixture-of-experts
model, read for the experts B tokens are routed to: with a share f = experts per token /
experts, B tokens touch 1 - (1 - f)^B of them on average (f = 0, no term, for dense models).

A mixed iteration (Sarathi, Orca: prefill chunks and decodes in one step) reads the weights
once: its linear layers run over the T prefill tokens and the B decode tokens together, and
each part keeps its own attention (as the kernel-composed source times it). So the decode
tokens join the prefill pass, and the weight read both parts would pay alone, phi(B) (the
dense weights d0 and the experts the decodes touch), is paid once. The mixed time is at
least each part's alone (prefill(T + B) >= prefill(T) >= a0 + a1 T_r >= phi(B), and
decode(B, C) >= phi(B)), which the bounds rely on.

Sources (`optimizer.fleet.sources`): measured iterations (`optimizer.fleet.measurements`), NVIDIA's
kernel tables (`optimizer.fleet.kernels`), a roofline (`optimizer.fleet.roofline`), each optionally
calibrated to a user's stack (`optimizer.fleet.calibration`); `source` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from optimizer.common.errors import ProfileError
from optimizer.fleet.fit import decode_features, expert_load, prefill_features


@dataclass(frozen=True)
class Profile:
    """Fitted iteration times of one configuration; the model is in the module docstring."""

    model: str
    gpu: str
    tp: int
    prefill_base_ms: float  # a0
    prefill_ridge_tokens: float  # T_r
    prefill_ms_per_token: float  # a1
    prefill_kink_tokens: float  # T_k
    prefill_ms_per_token_above_kink: float  # a2
    prefill_attention_ms_per_token_sq: float  # a3
    prefill_ms_per_prompt: float  # a4
    decode_base_ms: float  # d0
    decode_ms_per_seq: float  # d1
    decode_ms_per_context_token: float  # d2
    decode_ms_per_seq_sq: float  # d3
    decode_ms_per_expert_load: float = 0.0  # d4
    decode_expert_share: float = 0.0  # f
    #: Where the times come from, e.g. "measured: Splitwise (vLLM, 2023)" or "kernels: ...".
    source: str = "measured: Splitwise perf_model.csv (vLLM, 2023)"
    #: Fit error against its source, in percent (MAPE on held-out points; NaN when unknown).
    prefill_error_pct: float = float("nan")
    decode_error_pct: float = float("nan")

    def weight_read_ms(self, batch_size=1):
        """phi(B): what a mixed iteration pays once instead of twice (module docstring; scalar or array)."""
        dense = self.decode_base_ms + self.decode_ms_per_expert_load * expert_load(batch_size, self.decode_expert_share)
        ridge = self.prefill_base_ms + self.prefill_ms_per_token * self.prefill_ridge_tokens
        # Plain floats on the simulator's per-iteration path; numpy for arrays.
        return min(dense, ridge) if isinstance(dense, float) else np.minimum(dense, ridge)

    def prefill_time_ms(self, prompt_tokens) -> float | np.ndarray:
        """Time of a prefill iteration running ONE prompt of this many tokens (vectorised over numpy arrays)."""
        tokens = _non_negative(prompt_tokens, "prompt_tokens")
        return _scalar_or_array(self._prefill_ms(tokens, tokens**2, (tokens > 0).astype(float)))

    def batch_prefill_time_ms(self, prompt_lengths: Sequence[int]) -> float:
        """Time of one prefill iteration that runs all these prompts together."""
        lengths = _non_negative(list(prompt_lengths), "prompt_lengths").ravel()
        lengths = lengths[lengths > 0]
        return float(self._prefill_ms(lengths.sum(), (lengths**2).sum(), float(lengths.size)))

    def decode_time_ms(self, batch_size, context_tokens) -> float | np.ndarray:
        """One decode iteration for `batch_size` running sequences holding `context_tokens` tokens of KV cache in total (vectorised)."""
        batch = _non_negative(batch_size, "batch_size")
        context = _non_negative(context_tokens, "context_tokens")
        return _scalar_or_array(self._decode_ms(batch, context))

    def iteration_ms(self, tokens: float, attention_tokens_sq: float, chunks: int, batch_size: int, context_tokens: float) -> float:
        """One iteration of `tokens` prefill tokens in `chunks` chunks (attention `attention_tokens_sq`)
        and `batch_size` decodes holding `context_tokens`: the module docstring's mixed form (scalar,
        for the simulator's inner loop)."""
        if tokens <= 0:
            return self.decode_iteration_ms(batch_size, context_tokens)
        if batch_size <= 0:
            return self.prefill_iteration_ms(tokens, attention_tokens_sq, chunks)
        return (
            self.prefill_iteration_ms(tokens + batch_size, attention_tokens_sq, chunks)
            + self.decode_iteration_ms(batch_size, context_tokens)
            - self.weight_read_ms(batch_size)
        )

    def prefill_iteration_ms(self, tokens: float, attention_tokens_sq: float, prompts: int) -> float:
        """One prefill iteration of `tokens` prompt tokens from `prompts` prompts whose
        attention costs `attention_tokens_sq` squared tokens (scalar form of the model)."""
        if tokens <= 0:
            return 0.0
        return (
            self.prefill_base_ms
            + self.prefill_ms_per_token * max(tokens, self.prefill_ridge_tokens)
            + self.prefill_ms_per_token_above_kink * max(0.0, tokens - self.prefill_kink_tokens)
            + self.prefill_attention_ms_per_token_sq * attention_tokens_sq
            + self.prefill_ms_per_prompt * prompts
        )

    def decode_iteration_ms(self, batch_size: int, context_tokens: float) -> float:
        """Scalar form of `decode_time_ms`, for the simulator's inner loop."""
        if batch_size <= 0:
            return 0.0
        return self.decode_fixed_ms(batch_size) + self.decode_ms_per_context_token * context_tokens

    def decode_fixed_ms(self, batch_size):
        """The part of a decode iteration that does not depend on context: d0 + d1 B + d3 B^2 + d4 (1 - (1 - f)^B) (vectorised)."""
        return (
            self.decode_base_ms
            + self.decode_ms_per_seq * batch_size
            + self.decode_ms_per_seq_sq * batch_size**2
            + self.decode_ms_per_expert_load * expert_load(batch_size, self.decode_expert_share)
        )

    def corrected(self, prefill_scale: float, prefill_overhead_ms: float, decode_scale: float, decode_overhead_ms: float,
                  source: str, prefill_ms_per_token_above_kink: float = 0.0, decode_ms_per_seq: float = 0.0) -> Profile:
        """This profile with every prefill time x prefill_scale + prefill_overhead_ms (+ prefill_ms_per_token_above_kink
        x max(0, T - T_k)) and every decode time x decode_scale + decode_overhead_ms (+ decode_ms_per_seq x B):
        a calibration to another stack."""
        p, d = prefill_scale, decode_scale
        return replace(
            self,
            prefill_base_ms=p * self.prefill_base_ms + prefill_overhead_ms,
            prefill_ms_per_token=p * self.prefill_ms_per_token,
            prefill_ms_per_token_above_kink=p * self.prefill_ms_per_token_above_kink + prefill_ms_per_token_above_kink,
            prefill_attention_ms_per_token_sq=p * self.prefill_attention_ms_per_token_sq,
            prefill_ms_per_prompt=p * self.prefill_ms_per_prompt,
            decode_base_ms=d * self.decode_base_ms + decode_overhead_ms,
            decode_ms_per_seq=d * self.decode_ms_per_seq + decode_ms_per_seq,
            decode_ms_per_context_token=d * self.decode_ms_per_context_token,
            decode_ms_per_seq_sq=d * self.decode_ms_per_seq_sq,
            decode_ms_per_expert_load=d * self.decode_ms_per_expert_load,
            source=source,
            prefill_error_pct=float("nan"),
            decode_error_pct=float("nan"),
        )

    def _prefill_ms(self, tokens, squares, prompts) -> np.ndarray:
        features = prefill_features(tokens, squares, prompts, self.prefill_ridge_tokens, self.prefill_kink_tokens)
        coefficients = [
            self.prefill_base_ms,
            self.prefill_ms_per_token,
            self.prefill_ms_per_token_above_kink,
            self.prefill_attention_ms_per_token_sq,
            self.prefill_ms_per_prompt,
        ]
        # An iteration without tokens does not run, so it takes no time (not the fixed overhead).
        return np.where(np.asarray(tokens) > 0, features @ coefficients, 0.0)

    def _decode_ms(self, batch, context) -> np.ndarray:
        features = decode_features(batch, context, self.decode_expert_share)
        coefficients = [self.decode_base_ms, self.decode_ms_per_seq, self.decode_ms_per_context_token, self.decode_ms_per_seq_sq,
                        self.decode_ms_per_expert_load]
        return np.where(np.asarray(batch) > 0, features @ coefficients, 0.0)


def _non_negative(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ProfileError("must be finite and >= 0.", field=name)
    return array


def _scalar_or_array(values: np.ndarray) -> float | np.ndarray:
    return float(values) if np.ndim(values) == 0 else values
