"""Output-length prediction: what a planner may know about a request before it runs.

Two sources of predictions, and for each the spread of the truth around them:

- ``LengthPredictor``, fitted on history (requests whose output lengths are known). It
  predicts the median output length of the request's (model, prompt-length bucket), the
  buckets being powers of two of the prompt length: b(p) = floor(log2 p). A bucket with
  fewer than `min_samples` history requests falls back to its model's median, and a model
  absent from history to the median of all history. The median is the point prediction
  with the least mean absolute error, the figure the literature reports (S3, UELLM), with
  the share of predictions within 50 and 100 tokens of the truth.
- ``noisy_oracle``, for experiments: predicted = max(1, round(actual x exp(sigma Z))),
  Z ~ N(0, 1) drawn from the given seed. The error is lognormal with median 1.

For either, ``ratios`` is a sorted sample of actual / predicted (the fitted predictor's
residuals on its history; for the oracle, 999 quantiles of exp(-sigma Z)). A repairer uses
it to update a running request's expected length: once a request has produced g tokens
of a predicted o, its expected total length is

    E[O | O > g] = o x mean{ r in ratios : r o > g },   at least g + 1,

the mean of the truths consistent with what has been seen, not the original prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError


@dataclass(frozen=True)
class LengthBelief:
    """Spread of actual / predicted output length, for conditioning on progress."""

    ratios: np.ndarray  # sorted, positive

    def __post_init__(self):
        # Suffix sums make each conditional mean one binary search.
        object.__setattr__(self, "_suffix", np.r_[np.cumsum(self.ratios[::-1])[::-1], 0.0])

    @classmethod
    def exact(cls) -> LengthBelief:
        """Predictions are the truth."""
        return cls(np.ones(1))

    @classmethod
    def lognormal(cls, sigma: float, points: int = 999) -> LengthBelief:
        quantiles = [NormalDist().inv_cdf((i + 0.5) / points) for i in range(points)]
        return cls(np.sort(np.exp(sigma * np.asarray(quantiles))))

    def expected_totals(self, predicted: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """Expected final lengths of requests predicted `predicted` that have produced
        `generated` tokens (at least generated + 1: one that outran every error seen is
        expected to end soon)."""
        predicted, generated = np.asarray(predicted, dtype=float), np.asarray(generated, dtype=float)
        i = np.searchsorted(self.ratios, generated / predicted, side="right")
        count = len(self.ratios) - i
        mean_ratio = self._suffix[i] / np.maximum(count, 1)
        return np.where(count > 0, np.maximum(predicted * mean_ratio, generated + 1.0), generated + 1.0)


@dataclass(frozen=True)
class LengthPredictor:
    """Median output length per (model, prompt-length bucket), fitted on history."""

    medians: dict[tuple[str, int], float]  # (model, bucket) -> median output tokens
    model_medians: dict[str, float]
    overall_median: float
    belief: LengthBelief
    history_requests: int
    min_samples: int

    def predict(self, requests: pd.DataFrame) -> np.ndarray:
        """Predicted output tokens of each request (whole tokens, at least 1)."""
        buckets = _bucket(requests["prompt_tokens"].to_numpy(dtype=np.int64))
        models = requests["model"].astype(str).to_numpy()
        predicted = np.empty(len(requests))
        for i, (model, bucket) in enumerate(zip(models, buckets)):
            value = self.medians.get((model, int(bucket)))
            if value is None:
                value = self.model_medians.get(model, self.overall_median)
            predicted[i] = value
        return np.maximum(np.rint(predicted), 1).astype(np.int64)


def _bucket(prompt_tokens: np.ndarray) -> np.ndarray:
    return np.floor(np.log2(np.maximum(prompt_tokens, 1))).astype(np.int64)


def fit_predictor(history: pd.DataFrame, *, min_samples: int = 20) -> LengthPredictor:
    """Fit the bucket-median predictor on requests with known output lengths."""
    known = history[history["output_tokens"].notna()]
    if len(known) == 0:
        raise OptimizerError("The history has no request with a known output length to fit a predictor on.")
    table = pd.DataFrame(
        {
            "model": known["model"].astype(str).to_numpy(),
            "bucket": _bucket(known["prompt_tokens"].to_numpy(dtype=np.int64)),
            "output": known["output_tokens"].to_numpy(dtype=float),
        }
    )
    groups = table.groupby(["model", "bucket"], sort=True)["output"].agg(["median", "size"])
    medians = {(str(m), int(b)): float(row["median"]) for (m, b), row in groups.iterrows() if row["size"] >= min_samples}
    model_medians = {str(m): float(v) for m, v in table.groupby("model", sort=True)["output"].median().items()}
    predictor = LengthPredictor(medians, model_medians, float(table["output"].median()), LengthBelief.exact(), len(known), min_samples)
    residuals = table["output"].to_numpy() / predictor.predict(known)
    return replace(predictor, belief=LengthBelief(np.sort(residuals)))


def split_history(requests: pd.DataFrame, holdout: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first (1 - holdout) of a trace by arrival (file order among equal times) as
    history, the rest held out: a predictor is judged on requests after its history."""
    if not 0 < holdout < 1:
        raise OptimizerError(f"The held-out share must be between 0 and 1, got {holdout:g}.")
    order = np.argsort(requests["arrival_s"].to_numpy(dtype=float), kind="stable")
    cut = int(round(len(order) * (1 - holdout)))
    if cut == 0 or cut == len(order):
        raise OptimizerError(f"A trace of {len(order)} requests is too small to hold out {holdout:.0%} of it.")
    return requests.iloc[np.sort(order[:cut])], requests.iloc[np.sort(order[cut:])]


def prediction_error(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Mean absolute error (tokens) and the shares within 50 and 100 tokens."""
    error = np.abs(np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float))
    return {
        "mae_tokens": float(error.mean()),
        "within_50": float((error <= 50).mean()),
        "within_100": float((error <= 100).mean()),
        "requests": int(len(error)),
    }


def noisy_oracle(actual: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """actual x a lognormal error (median 1, log-standard deviation sigma), seeded."""
    if not sigma >= 0:
        raise OptimizerError(f"The length error sigma must be at least 0, got {sigma:g}.")
    # A stream of its own, so the same seed draws the same errors whatever else is random.
    rng = np.random.default_rng([seed, 1])
    noise = np.exp(sigma * rng.standard_normal(len(actual)))
    return np.maximum(np.rint(np.asarray(actual, dtype=float) * noise), 1).astype(np.int64)


def with_predictions(requests: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """A copy of the trace table whose `predicted_output_tokens` are `predicted`."""
    table = requests.copy()
    table["predicted_output_tokens"] = pd.array(np.asarray(predicted, dtype=np.int64), dtype="Int64")
    return table
