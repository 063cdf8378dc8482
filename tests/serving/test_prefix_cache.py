"""Tests of the simulator's prefix cache: hits, eviction, cache off, and the two engines agreeing."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import assert_engines_agree, make_requests, small_kv
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import parse_replicas, simulate, solve
from optimizer.fleet.sources import profile_for
from optimizer.serving.dispatch import DISPATCHERS
from optimizer.serving.prefix_cache import cache_summary


def grouped(prompts, outputs, groups, shared, arrivals=None) -> pd.DataFrame:
    """Requests in one-level prefix groups ('' = none) sharing `shared` tokens each."""
    requests = make_requests(prompts, outputs, arrivals)
    requests["prefix_group"] = pd.Series(groups, dtype=str)
    requests["prefix_tokens"] = pd.Series([(s,) if g else () for g, s in zip(groups, shared)], dtype=object)
    return requests


def test_second_request_sharing_a_prefix_prefills_only_its_suffix():
    """Tests the hand-checkable case: two 2,000-token prompts sharing 1,600 tokens on one replica,
    the second arriving after the first finished. It finds the 100 full 16-token blocks cached,
    so its first token comes after one prefill iteration of its 400 other tokens (attention
    2000^2 - 1600^2), and without the cache both take the same time."""
    cluster = parse_replicas("h100-tp4:1")
    requests = grouped([2000, 2000], [10, 10], ["a", "a"], [1600, 1600], arrivals=[0.0, 5.0])
    on = simulate(requests, cluster)
    off = simulate(requests, cluster, prefix_cache=False)
    assert on.requests["cached_tokens"].tolist() == [0, 1600]
    profile = profile_for(cluster.replicas[0])
    suffix_s = profile.iteration_ms(400, 2000**2 - 1600**2, 1, 0, 0) * 1e-3
    ttft = on.requests["first_token_s"] - on.requests["start_s"]
    assert ttft[1] == pytest.approx(suffix_s, rel=1e-12)
    ttft_off = off.requests["first_token_s"] - off.requests["start_s"]
    assert ttft_off[0] == pytest.approx(ttft_off[1]) == pytest.approx(ttft[0])
    assert on.replicas["prefix_hit_rate"].iloc[0] == pytest.approx(1600 / 4000)
    assert cache_summary(on.replicas)["prefix_cache"]["tokens_saved"] == 1600


def test_a_fully_shared_prompt_recomputes_its_last_block():
    """Tests vLLM's rule that at least one token is computed: two identical 160-token prompts
    (10 full blocks) share 9 blocks, 144 tokens."""
    requests = grouped([160, 160], [5, 5], ["q", "q"], [160, 160], arrivals=[0.0, 5.0])
    on = simulate(requests, parse_replicas("h100-tp4:1"))
    assert on.requests["cached_tokens"].tolist() == [0, 144]


def test_eviction_under_memory_pressure_loses_the_prefix():
    """Tests LRU eviction when cached blocks share a small KV cache (about 6k tokens) with
    running requests: 'a' is cached, six 2,000-token requests with their own prefixes then need
    the room, so when 'a' comes back it is gone; with a large cache it is found."""
    prompts = [2000] + [2000] * 6 + [2000]
    groups = ["a"] + [f"b{i}" for i in range(6)] + ["a"]
    arrivals = [0.0] + [10.0 + i for i in range(6)] + [30.0]
    requests = grouped(prompts, [5] * 8, groups, [1984] * 8, arrivals)
    pressed = simulate(requests, small_kv())
    assert pressed.requests["cached_tokens"].iloc[-1] == 0
    assert pressed.replicas["evicted_blocks"].iloc[0] > 0
    roomy = simulate(requests, parse_replicas("h100-tp4:1"))
    assert roomy.requests["cached_tokens"].iloc[-1] == 1984
    assert roomy.replicas["evicted_blocks"].iloc[0] == 0


def test_cache_off_equals_a_trace_without_prefixes():
    """Tests that --no-prefix-cache gives the results of the same trace with no prefix
    information, exactly (the golden digests cover traces without prefixes)."""
    requests = grouped([900, 900, 700, 1200], [50, 40, 30, 20], ["a", "a", "", "a"], [800, 800, 0, 800])
    cluster = parse_replicas("h100-tp4:2")
    off = simulate(requests, cluster, prefix_cache=False)
    plain = simulate(requests.drop(columns=["prefix_group", "prefix_tokens"]), cluster)
    pd.testing.assert_frame_equal(off.requests, plain.requests, check_exact=True)
    pd.testing.assert_frame_equal(off.replicas, plain.replicas, check_exact=True)


instances = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 2500), min_size=n, max_size=n),
        st.lists(st.integers(1, 300), min_size=n, max_size=n),
        st.lists(st.sampled_from(["", "a", "a", "b", "c"]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.0, 0.5, 3.0]), min_size=n, max_size=n),
        st.sampled_from(["h100-tp4:2", "small-kv"]),
        st.sampled_from(["sarathi", "vllm"]),
        st.sampled_from(DISPATCHERS),
        st.booleans(),
    )
)


@settings(max_examples=80, deadline=None)
@given(instances)
def test_lockstep_engine_matches_the_reference_engine_with_the_cache_on(instance):
    """Tests, on random traces with shared prefixes (and a KV cache small enough to evict and
    preempt; with a slowdown and a failure, which loses a replica's cache), that the lockstep
    engine's results equal the reference engine's bit for bit."""
    prompts, outputs, groups, gaps, fleet, policy, dispatch, deviate = instance
    cluster = small_kv(2) if fleet == "small-kv" else parse_replicas(fleet)
    shared = {g: min(p for p, h in zip(prompts, groups) if h == g) for g in set(groups) if g}
    requests = grouped(prompts, outputs, groups, [shared.get(g, 0) for g in groups],
                       [sum(gaps[: i + 1]) for i in range(len(gaps))])
    assert_engines_agree(requests, cluster, policy, dispatch, deviate)


def test_cache_affinity_keeps_a_group_together_until_the_load_is_imbalanced():
    """Tests SGLang's cache-aware rule: samples of one prompt follow the first to its replica
    while the load is balanced (every 'a' on one replica, hit rate above round-robin's);
    with balance_abs 0 and balance_rel 1, any imbalance sends requests to the shortest queue."""
    requests = grouped([1000] * 8, [50] * 8, ["a", "b"] * 4, [1000] * 8)
    cluster = parse_replicas("h100-tp4:2")
    sticky = simulate(requests, cluster, dispatch="cache-affinity")
    by_group = sticky.requests.groupby(requests["prefix_group"])["replica"].nunique()
    assert by_group.tolist() == [1, 1]
    spread = simulate(requests, cluster, dispatch="round-robin")
    assert sticky.replicas["cached_prompt_tokens"].sum() >= spread.replicas["cached_prompt_tokens"].sum()
    balanced = simulate(requests.assign(prefix_group=["a"] * 8, prefix_tokens=[(1000,)] * 8), cluster,
                        dispatch="cache-affinity", dispatch_options={"balance_abs": 0, "balance_rel": 1})
    assert balanced.requests["replica"].value_counts().tolist() == [4, 4]


def test_repairer_prefers_the_replica_that_holds_the_prefix():
    """Tests the repairer's prefix awareness: after request 0 ran on replica 1, the earliest
    finish for request 1 (same 3,900-token prefix) is replica 1, by the prefill it saves there,
    though both replicas look equally loaded (without the saving, ties go to replica 0)."""
    import numpy as np

    from optimizer.fleet.estimates import estimate, planning_lengths
    from optimizer.fleet.sources import profile_for as profile
    from optimizer.serving.batching import POLICIES
    from optimizer.serving.dispatch import make_dispatcher
    from optimizer.serving.engine import Engine, Sequence
    from optimizer.serving.simulator import _attach_caches

    requests = grouped([4000, 4000], [10, 10], ["a", "a"], [3900, 3900])
    cluster = parse_replicas("h100-tp4:2")
    engines = [Engine(r, profile(r), POLICIES["sarathi"]()) for r in cluster.replicas]
    _attach_caches(engines, requests)
    engines[1].enqueue(Sequence(0, 4000, 10, 0.0, 0.0), 0.0)
    engines[1].run_until(float("inf"))
    estimates = estimate(requests, cluster, planning_lengths(requests))
    plan = solve(requests, cluster, solver="round-robin", prefix_cache=False).plan
    repair = make_dispatcher("repair", requests, cluster, estimates, plan=plan)
    assert repair.prefix_saving(1, 0, engines) == 0.0
    assert repair.prefix_saving(1, 1, engines) == pytest.approx(3888 / 4000 * estimates.prefill_s[1, 0])
    assert repair._earliest(1, engines, np.zeros(2)) == 1
