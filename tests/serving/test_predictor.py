"""Tests of output-length prediction: the fitted predictor, its error, the noisy oracle and
the expected length given progress."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_requests

from optimizer import OptimizerError, parse_replicas, solve, trace_bounds
from optimizer.serving.predictor import (
    LengthBelief,
    fit_predictor,
    noisy_oracle,
    prediction_error,
    split_history,
    with_predictions,
)


def test_predictor_gives_bucket_medians_with_fallbacks():
    """Tests the model: the median of the (model, prompt-length bucket), else the model's
    median when the bucket has too few requests, else the median of all history."""
    # 20 prompts of 100 tokens (bucket 6: 64..127) with outputs 1..20 (median 10.5),
    # 3 prompts of 1000 tokens (bucket 9) with outputs 500: too few for a bucket of their own.
    history = make_requests([100] * 20 + [1000] * 3, list(range(1, 21)) + [500] * 3, models=["m"] * 23)
    predictor = fit_predictor(history, min_samples=20)
    asked = make_requests([70, 1000, 100], [1, 1, 1], models=["m", "m", "other"])
    model_median = np.median(list(range(1, 21)) + [500] * 3)
    assert predictor.predict(asked).tolist() == [10, round(model_median), round(model_median)]  # 10.5 rounds to even


def test_prediction_error_is_mae_and_shares_within_50_and_100_tokens():
    """Tests the error figures on a hand-checked case."""
    error = prediction_error(np.array([100, 100, 100, 100]), np.array([100, 140, 190, 400]))
    assert error == {"mae_tokens": (0 + 40 + 90 + 300) / 4, "within_50": 0.5, "within_100": 0.75, "requests": 4}


def test_split_history_holds_out_the_latest_requests():
    """Tests that the held-out part comes after the history in time, whatever the file order."""
    requests = make_requests([10] * 10, [5] * 10, arrivals=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    history, held_out = split_history(requests, holdout=0.2)
    assert held_out["arrival_s"].tolist() == [9, 8] and len(history) == 8
    with pytest.raises(OptimizerError, match="between 0 and 1"):
        split_history(requests, holdout=1.5)


def test_noisy_oracle_is_seeded_and_exact_at_sigma_zero():
    """Tests the noisy oracle: the same seed gives the same predictions, sigma 0 gives the truth,
    and the log-error has the asked spread."""
    actual = np.full(20_000, 400)
    assert np.array_equal(noisy_oracle(actual, 0.5, seed=3), noisy_oracle(actual, 0.5, seed=3))
    assert not np.array_equal(noisy_oracle(actual, 0.5, seed=3), noisy_oracle(actual, 0.5, seed=4))
    assert np.array_equal(noisy_oracle(actual, 0.0, seed=3), actual)
    spread = np.std(np.log(noisy_oracle(actual, 0.5, seed=3) / actual))
    assert spread == pytest.approx(0.5, rel=0.03)


def test_expected_length_is_conditioned_on_tokens_produced():
    """Tests LengthBelief: exact predictions stay put; under lognormal error the expected length
    starts at the lognormal mean, grows as a request outlives its prediction, and always
    exceeds what it has produced."""
    assert LengthBelief.exact().expected_totals(np.array([100.0]), np.array([40.0])).tolist() == [100.0]
    belief = LengthBelief.lognormal(0.5)
    produced = np.array([0.0, 50.0, 100.0, 200.0, 400.0, 5000.0])
    expected = belief.expected_totals(np.full(6, 100.0), produced)
    assert expected[0] == pytest.approx(100 * np.exp(0.5**2 / 2), rel=0.01)
    assert np.all(np.diff(expected) > 0) and np.all(expected > produced)


def test_plans_use_predictions_and_bounds_use_actual_lengths():
    """Tests that a plan is made from the predicted lengths (what is known before requests run)
    while the lower bound uses the actual ones (hindsight)."""
    requests = make_requests([500] * 40, [100] * 40)
    cluster = parse_replicas("h100-tp4:2")
    predicted = with_predictions(requests, np.full(40, 400))
    assert solve(predicted, cluster, solver="lpt").objective > 2 * solve(requests, cluster, solver="lpt").objective
    assert trace_bounds(predicted, cluster)[0].best_s == trace_bounds(requests, cluster)[0].best_s
    assert predicted["predicted_output_tokens"].dtype == pd.Int64Dtype()
