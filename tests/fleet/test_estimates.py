"""Tests of the per-request estimates drawn from the performance profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer import OptimizerError, builtin_profiles, estimate, parse_replicas


def _requests(prompts, outputs, models=None):
    n = len(prompts)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "arrival_s": np.zeros(n),
            "prompt_tokens": np.asarray(prompts, dtype=np.int64),
            "model": models or [""] * n,
        }
    )


def test_single_token_request_takes_one_prefill():
    """Tests that a request with one output token costs exactly its prefill (the first token comes from it)."""
    requests = _requests([512], [1])
    found = estimate(requests, parse_replicas("h100-tp4"), np.array([1]))
    prefill_s = builtin_profiles()[("llama2-70b", "h100-80gb", 4)].prefill_time_ms(512) / 1e3
    assert found.latency_s[0, 0] == pytest.approx(prefill_s)
    # Work and the bounds count the prefill chunked with others: a share of the fixed cost.
    assert found.min_latency_s[0, 0] == pytest.approx(found.work_s[0, 0])
    assert 0.8 * prefill_s < found.work_s[0, 0] < prefill_s
    assert found.min_work_s[0, 0] <= found.work_s[0, 0]


def test_lower_bound_forms_never_exceed_the_planning_estimates():
    """Tests that the lower-bound work never exceeds the planning work summed over the trace (the
    bound prices prompt tokens and decode steps jointly), and min_latency <= latency for every
    request on every kind."""
    rng = np.random.default_rng(3)
    prompts, outputs = rng.integers(1, 8000, 500), rng.integers(1, 1024, 500)
    found = estimate(_requests(prompts, outputs), parse_replicas("h100-tp4:2,a100-tp2:1,h100-pcap-tp8"), outputs)
    assert (found.min_work_s.sum(axis=0) <= found.work_s.sum(axis=0) + 1e-9).all()
    assert (found.min_latency_s <= found.latency_s + 1e-12).all()
    assert (found.work_s > 0).all()


def test_a100_is_slower_at_prefill_than_at_decode_relative_to_h100():
    """Tests the mixed-fleet asymmetry the planner exploits: A100 prefill costs ~2-3x H100's, decode far less."""
    # 128 copies of each, so that both kinds run full batches of 64.
    outputs = np.array([10, 1000] * 128)
    found = estimate(_requests([4000, 50] * 128, outputs), parse_replicas("h100-tp4,a100-tp4"), outputs)
    assert found.batch_size.tolist() == [64, 64]
    prompt_heavy, decode_heavy = found.work_s[0, 1] / found.work_s[0, 0], found.work_s[1, 1] / found.work_s[1, 0]
    assert prompt_heavy > 1.8 and decode_heavy < prompt_heavy


def test_kv_footprint_counts_whole_blocks_and_limits_eligibility():
    """Tests that KV footprints round up to 16-token blocks and a request too big for a kind is not eligible there."""
    found = estimate(_requests([30_000, 100], [9_000, 1]), parse_replicas("a100-tp2,h100-tp4"), np.array([9_000, 1]))
    assert found.kv_tokens[1, 0] == 112
    assert found.eligible.tolist() == [[False, True], [True, True]]


def test_request_larger_than_every_kv_cache_is_named():
    """Tests that a request no replica can hold is one error naming it and the largest capacity."""
    with pytest.raises(OptimizerError, match=r"Request 'r1' needs 50,016 tokens of KV cache .* more than the largest capacity .* 37,728 tokens on llama2-70b@a100-80gb-tp2 \(1 request cannot fit\)"):
        estimate(_requests([100, 50_000], [10, 10]), parse_replicas("a100-tp2:2"), np.array([10, 10]))


def test_missing_measurements_are_a_clear_error():
    """Tests that asking for measurements of a configuration without them names the replica and
    lists the measured configurations; and that user profiles missing a kind fall back to the
    bundled ones."""
    with pytest.raises(OptimizerError, match=r"Replica 'l40s-tp1-0' \(llama-3.1-8b@l40s-tp1/measured\): no bundled measurements .* measured: bloom-176b@a100-80gb-tp8"):
        estimate(_requests([10], [10]), parse_replicas("llama-3.1-8b@l40s-tp1", source="measured"), np.array([10]))
    only_h100 = {k: p for k, p in builtin_profiles().items() if k[1] == "h100-80gb"}
    found = estimate(_requests([10], [10]), parse_replicas("a100-tp4"), np.array([10]), profiles=only_h100)
    assert found.work_s[0, 0] == estimate(_requests([10], [10]), parse_replicas("a100-tp4"), np.array([10])).work_s[0, 0]


def test_work_for_the_planning_lengths_is_the_work_estimate():
    """Tests that pricing a request at another length uses the same formula as work_s: at the
    planning lengths it gives work_s back, and more output costs more."""
    requests = _requests([100, 2000, 5000], [1, 300, 900])
    cluster = parse_replicas("h100-tp4:1,a100-tp4:1")
    output = np.array([1, 300, 900])
    estimates = estimate(requests, cluster, output)
    rows, prompt = np.arange(3), requests["prompt_tokens"].to_numpy()
    for kind in range(len(estimates.kinds)):
        np.testing.assert_allclose(estimates.work_for(rows, kind, prompt, output), estimates.work_s[:, kind], rtol=1e-12)
        assert np.all(estimates.work_for(rows, kind, prompt, output + 10) > estimates.work_s[:, kind])
