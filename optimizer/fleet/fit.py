"""Fitting the profile's closed form (`optimizer.fleet.profile`) to timed points, whatever their source.

Both parts are linear in their coefficients once the prefill's ridge T_r and kink T_k are
fixed, so each fit is a non-negative least-squares problem on relative errors,

    min_x  sum_i (f_i . x / y_i - 1)^2   subject to x >= 0,

(f_i the point's features, y_i its time), with T_r and T_k searched on grids.
"""

from __future__ import annotations

import numpy as np

#: Candidate roofline ridges T_r, in tokens.
RIDGE_GRID_TOKENS = tuple(float(t) for t in np.geomspace(128, 512, 25))


def prefill_features(tokens, squares, prompts, ridge: float, kink: float) -> np.ndarray:
    """Columns 1, max(T, T_r), max(0, T - T_k), S, N of the prefill form."""
    tokens = np.asarray(tokens, dtype=float)
    columns = [np.ones_like(tokens), np.maximum(tokens, ridge), np.maximum(tokens - kink, 0.0), squares, prompts]
    return np.stack(np.broadcast_arrays(*columns), axis=-1)


def expert_load(batch, expert_share: float):
    """1 - (1 - f)^B: the share of a mixture-of-experts model's experts that B tokens touch on
    average, each routed to a share f of them (0 for dense models; scalar or array)."""
    return 1.0 - (1.0 - expert_share) ** batch if expert_share else 0.0 * batch


def decode_features(batch, context, expert_share: float = 0.0) -> np.ndarray:
    """Columns 1, B, C, B^2, 1 - (1 - f)^B of the decode form."""
    batch = np.asarray(batch, dtype=float)
    return np.stack(np.broadcast_arrays(np.ones_like(batch), batch, context, batch**2, expert_load(batch, expert_share)), axis=-1)


def fit_prefill(tokens, squares, prompts, y, kinks=(2048.0,), ridges=RIDGE_GRID_TOKENS) -> tuple[float, float, np.ndarray]:
    """Best (T_r, T_k) of the grids and the coefficients a0..a4 there (least squared relative error)."""
    y = np.asarray(y, dtype=float)
    best = None
    for kink in kinks:
        for ridge in ridges:
            a = prefill_features(tokens, squares, prompts, ridge, kink) / y[:, None]
            coefficients = nnls(a, np.ones_like(y))
            error = float(np.sum((a @ coefficients - 1.0) ** 2))
            if best is None or error < best[0]:
                best = (error, ridge, kink, coefficients)
    return best[1], best[2], best[3]


def fit_decode(batch, context, y, expert_share: float = 0.0) -> np.ndarray:
    """Coefficients d0..d4 (least squared relative error); d4 = 0 without experts."""
    y = np.asarray(y, dtype=float)
    return nnls(decode_features(batch, context, expert_share) / y[:, None], np.ones_like(y))


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0, by the Lawson-Hanson active-set method."""
    # Unit-norm columns make the tolerances meaningful whatever the units of the features.
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(a).max()) * max(1.0, float(np.abs(b).max())))
    for _ in range(3 * n + 10):
        gradient = a.T @ (b - a @ x)
        free = ~passive & (gradient > tol)
        if not free.any():
            break
        passive[np.argmax(np.where(free, gradient, -np.inf))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if np.all(z[passive] > tol):
                x = z
                break
            blocking = passive & (z <= tol)
            step = x[blocking] - z[blocking]
            alpha = np.min(np.divide(x[blocking], step, out=np.zeros_like(step), where=step > 0))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return x / scale


def mape_pct(predicted, measured) -> float:
    """Mean absolute percentage error (NaN without points)."""
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(predicted / measured - 1.0)) * 100) if len(measured) else float("nan")


def max_ape_pct(predicted, measured) -> float:
    """Largest absolute percentage error (the worst point)."""
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.max(np.abs(predicted / measured - 1.0)) * 100) if len(measured) else float("nan")
