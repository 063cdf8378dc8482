"""Tests of the lower bounds with prefix reuse: the unique prefill by hand, and no simulation below them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import make_requests
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import parse_replicas, simulate, trace_bounds
from optimizer.fleet.cluster import Cluster, EngineLimits, Replica
from optimizer.fleet.estimates import estimate, hindsight_lengths
from optimizer.planning.reuse import cappable_blocks, reuse_work
from optimizer.traces.prefixes import prefix_chains, prefix_units


SMALL_KV = EngineLimits(gpu_memory_utilization=0.84, max_num_seqs=8)


def grouped(prompts, outputs, groups, shared, arrivals=None) -> pd.DataFrame:
    requests = make_requests(prompts, outputs, arrivals)
    requests["prefix_group"] = pd.Series(groups, dtype=str)
    requests["prefix_tokens"] = pd.Series([(s,) if g else () for g, s in zip(groups, shared)], dtype=object)
    return requests


def test_unique_prefill_counts_each_shared_block_once():
    """Tests the unique prefill by hand: four samples of a 160-token prompt (10 blocks of 16)
    can each reuse at most 9 blocks (one token is always computed), so each computes at least
    16 tokens and the 9 shared blocks are computed once: 4 x 16 + 144 = 208 tokens; a
    1,000-token request sharing nothing adds its 1,000."""
    requests = grouped([160] * 4 + [1000], [10] * 5, ["q"] * 4 + [""], [160] * 4 + [0])
    units = prefix_units(prefix_chains(requests), 16)
    cap, shared = cappable_blocks(units, requests["prompt_tokens"].to_numpy())
    assert cap.tolist() == [9, 9, 9, 9, 0]
    assert shared.tolist() == [9]
    cluster = parse_replicas("h100-tp4:1")
    estimates = estimate(requests, cluster, hindsight_lengths(requests))
    reuse = reuse_work(requests, cluster, estimates, hindsight_lengths(requests))
    assert reuse.unique_prompt_tokens.tolist() == [4 * 16 + 144 + 1000]


def test_bound_with_reuse_is_below_the_bound_without():
    """Tests that declaring shared prefixes lowers the bound (reuse saves work) and that the
    simulation with the cache finishes sooner than without it."""
    requests = grouped([3000] * 16, [20] * 16, ["s"] * 16, [2900] * 16)
    cluster = parse_replicas("h100-tp4:2")
    with_reuse = trace_bounds(requests, cluster)[0].best_s
    without = trace_bounds(requests, cluster, prefix_cache=False)[0].best_s
    assert with_reuse < 0.5 * without
    on = simulate(requests, cluster).requests["finish_s"].max()
    off = simulate(requests, cluster, prefix_cache=False).requests["finish_s"].max()
    assert with_reuse <= on < off


instances = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 3000), min_size=n, max_size=n),
        st.lists(st.integers(1, 200), min_size=n, max_size=n),
        st.lists(st.sampled_from(["", "a", "a", "a", "b", "c"]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0]), min_size=n, max_size=n),
        st.sampled_from(["h100-tp4:1", "h100-tp4:2", "h100-tp4:1,a100-tp4:1", "small-kv"]),
        st.sampled_from(["sarathi", "vllm", "orca"]),
        st.sampled_from(["round-robin", "least-outstanding", "least-work", "cache-affinity"]),
    )
)


@settings(max_examples=60, deadline=None)
@given(instances)
def test_no_simulation_with_the_cache_finishes_below_the_bound_with_reuse(instance):
    """Tests, on random traces whose requests share prefixes, fleets, batching policies and
    dispatch rules (and a KV cache small enough to evict and preempt), that every simulation
    with the prefix cache ends no earlier than the lower bound with reuse."""
    prompts, outputs, groups, gaps, fleet, policy, dispatch = instance
    shared = {g: min(p for p, h in zip(prompts, groups) if h == g) for g in set(groups) if g}
    requests = grouped(prompts, outputs, groups, [shared.get(g, 0) for g in groups],
                       np.cumsum(gaps).tolist())
    if fleet == "small-kv":  # about 6k tokens of KV cache: evictions and preemptions
        cluster = Cluster(tuple(Replica(f"s{i}", "h100-80gb", 2, "llama2-70b", SMALL_KV) for i in range(2)))
        requests["prompt_tokens"] = requests["prompt_tokens"].clip(upper=2500)
        requests["prefix_tokens"] = [tuple(min(e, p) for e in ends) for ends, p in zip(requests["prefix_tokens"], requests["prompt_tokens"])]
    else:
        cluster = parse_replicas(fleet)
    bound = trace_bounds(requests, cluster)[0].best_s
    makespan = simulate(requests, cluster, policy=policy, dispatch=dispatch).requests["finish_s"].max()
    assert bound <= makespan * (1 + 1e-9)
