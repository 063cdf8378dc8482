"""Tests that the bounds hold for simulated runs on mixed fleets of the new GPU types and sources."""

from __future__ import annotations

from conftest import make_requests
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import parse_replicas, simulate, summary, trace_bounds
from optimizer.serving.batching import POLICIES

FLEETS = (
    "llama-3.1-8b@h100-tp1:1,llama-3.1-8b@l40s-tp1:2",
    "llama-3.1-8b@b200-tp1:1,llama-3.1-8b@l4-tp1:1,llama-3.1-8b@a100-tp1:1",
    "qwen3-30b-a3b@h100-tp1:1,qwen3-30b-a3b@h200-tp1:1",
)
instances = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 6000), min_size=n, max_size=n),
        st.lists(st.integers(1, 600), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.0, 2.0, 10.0]), min_size=n, max_size=n),
        st.sampled_from(FLEETS),
        st.sampled_from(sorted(POLICIES)),
        st.sampled_from(["least-outstanding", "least-work", "round-robin"]),
    )
)


@settings(max_examples=40, deadline=None)
@given(instances)
def test_every_bound_is_below_every_simulated_makespan(instance):
    """Tests, on random traces and mixed fleets of kernel-table, roofline and MoE replica kinds,
    for every batching policy: the simulated makespan is at least every lower bound (the bounds
    price mixed iterations that read the weights once)."""
    prompts, outputs, arrivals, fleet, policy, dispatch = instance
    requests, cluster = make_requests(prompts, outputs, arrivals), parse_replicas(fleet)
    sim = simulate(requests, cluster, policy=policy, dispatch=dispatch, seed=1)
    makespan = summary(sim, requests)["makespan_s"]
    bounds, _ = trace_bounds(requests, cluster)
    for value in (bounds.work_s, bounds.chain_s, bounds.pcmax_s):
        assert makespan >= value * (1 - 1e-9)
