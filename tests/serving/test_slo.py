"""Tests of length-scaled latency targets and of which targets are achievable at all."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_requests

from optimizer import OptimizerError, parse_replicas
from optimizer.fleet.estimates import estimate, hindsight_lengths
from optimizer.fleet.sources import profile_for
from optimizer.serving.slo import Target, achievable, parse_target, with_targets


def test_targets_parse_fixed_and_scaled_forms():
    """Tests the target syntax: seconds, ms, and BASE+PER/token; nonsense and zero are one clear error."""
    assert parse_target("2") == Target(2.0) == parse_target("2s") == parse_target(2)
    assert parse_target("500ms") == Target(0.5)
    assert parse_target("0.5s+1ms/token") == Target(0.5, 0.001)
    with pytest.raises(OptimizerError, match="is not SECONDS or BASE"):
        parse_target("fast")
    with pytest.raises(OptimizerError, match="greater than 0"):
        parse_target("0")


def test_scaled_targets_grow_with_the_prompt_and_keep_a_requests_own():
    """Tests by hand: TTFT 0.5 s + 1 ms/token gives 0.6 s for 100 prompt tokens and 10.5 s for
    10,000; E2E scales with the output; a request's own target is kept."""
    requests = make_requests([100, 10_000], [20, 2000])
    requests["ttft_target_s"] = [np.nan, 3.0]
    table = with_targets(requests, ttft="0.5s+1ms/token", e2e="10s+10ms/token")
    assert table["ttft_target_s"].tolist() == pytest.approx([0.6, 3.0])
    assert table["e2e_target_s"].tolist() == pytest.approx([10.2, 30.0])


def test_a_fixed_ttft_is_unachievable_for_a_long_prompt_alone():
    """Tests achievability: a 2 s TTFT is met alone by a short prompt but not by a 30,000-token
    prompt on any replica (its prefill alone takes longer), while a length-scaled target is."""
    requests = make_requests([200, 30_000], [10, 10])
    cluster = parse_replicas("llama-3.1-70b@h100-tp4:1")
    found = estimate(requests, cluster, hindsight_lengths(requests))
    profiles = [profile_for(r) for r in cluster.first_of_each_kind]
    assert achievable(with_targets(requests, ttft="2s"), found, profiles).tolist() == [True, False]
    assert achievable(with_targets(requests, ttft="0.5s+1ms/token"), found, profiles).tolist() == [True, True]
