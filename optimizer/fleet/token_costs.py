"""Token costs: an iteration's time shared out per prompt token and per decode step.

With the profile's forms (`optimizer.fleet.profile`), write the token-dependent part of an
iteration with T prefill tokens and B decodes (attention, per-chunk and context terms are
each request's own and are added per request exactly):

    lin(x)  = a0 + a1 max(x, T_r) + a2 max(0, x - T_k)          the weight pass over x tokens
    fix(B)  = d0 + d1 B + d3 B^2 + d4 (1 - (1 - f)^B)           a decode step without context
    G(T, 0) = lin(T),   G(0, B) = fix(B),   G(T, B) = lin(T + B) + fix(B) - phi(B)   (phi as in the profile)

- Planning price (what a replica running full batches of B* spends, `planning_chunk_price_ms`):
  a chunk of the engine's size that rides on a decode step of B* sequences (Sarathi, Orca and
  vLLM V1 mix them) costs its marginal time only, lin(chunk) - phi(B*): the decode tokens
  join the chunk's weight pass and the weights are read once. Chunks with no decode step to
  ride on cost lin(chunk) alone.
- Lower-bound prices (valid for every schedule): any alpha, beta >= 0 with
  alpha T + beta B <= G(T, B) for every iteration a replica can run make
  alpha x prompt tokens + beta x decode steps a lower bound on the time of the iterations
  that run them. G is piecewise linear in T + B, so the constraints need checking only at
  its breakpoints (x = B + 1, T_r, T_k, the budget, and the longest prefill an unchunked
  policy may run). `lower_bound_prices` picks, for the trace's mix of prompt tokens P and
  decode steps D, the pair maximising alpha P + beta D (a concave function of alpha, searched
  on a grid: any point of it is valid). A decode step that rides on a prefill chunk costs
  far less than one in a pure decode step, which is why beta can sit below min_B fix(B) / B.
"""

from __future__ import annotations

import numpy as np

from optimizer.fleet.profile import Profile

_ALPHA_GRID = 257


def weight_pass_ms(profile: Profile, tokens) -> np.ndarray:
    """lin(x): the prefill form without its per-chunk and attention terms (vectorised)."""
    x = np.asarray(tokens, dtype=float)
    return (
        profile.prefill_base_ms
        + profile.prefill_ms_per_token * np.maximum(x, profile.prefill_ridge_tokens)
        + profile.prefill_ms_per_token_above_kink * np.maximum(0.0, x - profile.prefill_kink_tokens)
    )


def _breakpoints(profile: Profile, low: int, high: int) -> np.ndarray:
    """Integers in [low, high] where lin(x) - alpha x can be least: the ends and around each kink."""
    points = [low, high]
    for kink in (profile.prefill_ridge_tokens, profile.prefill_kink_tokens):
        points += [int(np.floor(kink)), int(np.ceil(kink))]
    return np.unique(np.clip(np.array(points, dtype=float), low, max(low, high)))


def least_prefill_price_ms(profile: Profile, budget_tokens: int, longest_prefill_tokens: int) -> float:
    """alpha_max = min lin(x) / x over every prefill a replica can run (x up to the longest
    unchunked prefill): no prompt token costs less, wherever it runs."""
    sizes = _breakpoints(profile, 1, max(budget_tokens, int(longest_prefill_tokens)))
    return float(np.min(weight_pass_ms(profile, sizes) / sizes))


def planning_chunk_price_ms(profile: Profile, chunk_tokens: int, batch: int, prompt_tokens: float, decode_steps: float) -> float:
    """Prefill price per token for planning, as a chunking engine runs (Sarathi: each iteration
    is B* decodes plus chunk_tokens - B* prompt tokens): (lin(chunk) - phi) / (chunk - B*) for
    the share rho of chunks that find a decode step to ride on, lin(chunk) / chunk for the rest;
    rho = min(1, (D / B*) / (P / (chunk - B*))) with P prompt tokens and D decode steps in all.
    Summed over a trace this is never below the lower-bound prices' total (both iterations
    are constraints of `lower_bound_prices`)."""
    alone = float(weight_pass_ms(profile, chunk_tokens)) / chunk_tokens
    riding_tokens = chunk_tokens - batch
    if batch <= 1 or prompt_tokens <= 0 or riding_tokens < 1:
        return alone
    riding = (float(weight_pass_ms(profile, chunk_tokens)) - float(profile.weight_read_ms(batch))) / riding_tokens
    rho = min(1.0, (decode_steps / batch) / (prompt_tokens / riding_tokens))
    return rho * riding + (1.0 - rho) * alone


def lower_bound_prices(profile: Profile, budget_tokens: int, max_batch: int, longest_prefill_tokens: int,
                       prompt_tokens: float, decode_steps: float) -> tuple[float, float]:
    """(alpha, beta) in ms per prompt token and per decode step; see the module docstring."""
    longest = max(budget_tokens, int(longest_prefill_tokens))
    alpha_max = least_prefill_price_ms(profile, budget_tokens, longest_prefill_tokens)
    batches = np.arange(1, max_batch + 1)
    fixed = np.asarray(profile.decode_fixed_ms(batches.astype(float)), dtype=float)
    # For each B, the candidate x = T + B of the mixed constraint (T >= 1).
    rows_b, rows_x = [], []
    for b in batches:
        for x in _breakpoints(profile, int(b) + 1, max(int(b) + 1, longest)):
            rows_b.append(b)
            rows_x.append(x)
    rows_b, rows_x = np.array(rows_b, dtype=float), np.array(rows_x, dtype=float)
    mixed_fixed = weight_pass_ms(profile, rows_x) + fixed[rows_b.astype(int) - 1] - profile.weight_read_ms(rows_b)
    pure_decode = float(np.min(fixed / batches))  # beta's cap from the pure decode steps
    best = (0.0, pure_decode)
    best_value = best[1] * decode_steps
    for alpha in np.linspace(0.0, alpha_max, _ALPHA_GRID):
        beta = min(pure_decode, float(np.min((mixed_fixed - alpha * (rows_x - rows_b)) / rows_b)))
        beta = max(beta, 0.0)
        value = alpha * prompt_tokens + beta * decode_steps
        if value > best_value:
            best, best_value = (float(alpha), beta), value
    return best


def drain_ms_per_step(profile: Profile, batch: int) -> float:
    """Extra time per decode step while a batch of B* shrinks linearly to 0 at the end of a queue,
    over what the shares fix(B*) / B* charge: the mean over b = 1..B* of fix(b) - b fix(B*) / B*."""
    if batch <= 1:
        return 0.0
    b = np.arange(1, batch + 1, dtype=float)
    fixed = np.asarray(profile.decode_fixed_ms(b), dtype=float)
    return max(float(np.mean(fixed - b * fixed[-1] / batch)), 0.0)
