"""Tests of the iteration-level simulator: hand-checked cases and invariants on random traces."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_requests
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import (
    OptimizerError,
    PlanError,
    builtin_profiles,
    parse_replicas,
    simulate,
    solve,
    summary,
    trace_bounds,
)
from optimizer.fleet.cluster import Cluster, EngineLimits, Replica
from optimizer.serving.batching import POLICIES
from optimizer.serving.dispatch import DISPATCHERS

H100 = builtin_profiles()[("llama2-70b", "h100-80gb", 4)]


def prefill_ms(tokens: int, prompts: int = 1, squares: float | None = None) -> float:
    p = H100
    squares = tokens**2 if squares is None else squares
    return (p.prefill_base_ms + p.prefill_ms_per_token * max(tokens, p.prefill_ridge_tokens)
            + p.prefill_ms_per_token_above_kink * max(0, tokens - p.prefill_kink_tokens)
            + p.prefill_attention_ms_per_token_sq * squares + p.prefill_ms_per_prompt * prompts)


def decode_ms(batch: int, context: int) -> float:
    p = H100
    return p.decode_base_ms + p.decode_ms_per_seq * batch + p.decode_ms_per_context_token * context + p.decode_ms_per_seq_sq * batch**2


@pytest.mark.parametrize("policy", ["vllm", "sarathi", "orca"])
def test_one_request_by_hand(policy):
    """Tests one request (prompt 100, 3 output tokens): one prefill pass gives the first token,
    then two decode iterations at context 100 and 101."""
    sim = simulate(make_requests([100], [3]), parse_replicas("h100-tp4"), policy=policy)
    row = sim.requests.iloc[0]
    first = prefill_ms(100) / 1e3
    assert row["start_s"] == 0 and row["first_token_s"] == pytest.approx(first)
    assert row["finish_s"] == pytest.approx(first + (decode_ms(1, 100) + decode_ms(1, 101)) / 1e3)


def test_two_requests_vllm_by_hand():
    """Tests vLLM on two requests arriving together (outputs 2 and 4): one prefill of both prompts,
    one decode at batch 2, then two at batch 1 for the longer one."""
    sim = simulate(make_requests([100, 300], [2, 4]), parse_replicas("h100-tp4"), policy="vllm")
    prefill = prefill_ms(400, prompts=2, squares=100**2 + 300**2)
    both = decode_ms(2, 400)
    finish = sim.requests["finish_s"].to_numpy()
    assert sim.requests["first_token_s"].tolist() == pytest.approx([prefill / 1e3] * 2)
    assert finish[0] == pytest.approx((prefill + both) / 1e3)
    assert finish[1] == pytest.approx((prefill + both + decode_ms(1, 302) + decode_ms(1, 303)) / 1e3)


def test_static_batch_pads_until_its_longest_member_ends():
    """Tests static batching: the short request's slot still costs until the batch ends, and a
    third request waits for the next batch."""
    limits = EngineLimits(max_num_seqs=2)
    cluster = Cluster((Replica("r0", "h100-80gb", 4, "llama2-70b", limits),))
    sim = simulate(make_requests([100, 300, 50], [2, 4, 2]), cluster, policy="static")
    prefill = prefill_ms(400, prompts=2, squares=100**2 + 300**2)
    # Batch of 2 for three decode steps: contexts (100+300), (101+301), (101+302) -- the
    # finished member's KV stays as padding.
    batch_end = prefill + decode_ms(2, 400) + decode_ms(2, 402) + decode_ms(2, 403)
    finish = sim.requests["finish_s"].to_numpy()
    assert finish[1] == pytest.approx(batch_end / 1e3)
    assert sim.requests["start_s"].iloc[2] == pytest.approx(batch_end / 1e3)


def test_small_kv_cache_preempts_and_still_finishes_everything():
    """Tests that a replica whose KV cache is too small for all running requests preempts
    (recompute) and still finishes every request once."""
    limits = EngineLimits(gpu_memory_utilization=0.84)  # leaves about 6k tokens of KV cache on llama2-70b TP2
    cluster = Cluster((Replica("r0", "h100-80gb", 2, "llama2-70b", limits),))
    assert cluster.replicas[0].kv_capacity_tokens < 10_000
    requests = make_requests([1000] * 8, [600] * 8)
    sim = simulate(requests, cluster, policy="sarathi")
    assert sim.requests["preemptions"].sum() > 0
    assert sim.requests["finish_s"].notna().all()
    assert sim.replicas["peak_kv_tokens"].iloc[0] <= sim.replicas["kv_capacity_tokens"].iloc[0]


instances = st.integers(min_value=1, max_value=25).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 6000), min_size=n, max_size=n),
        st.lists(st.integers(1, 600), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.0, 0.5, 3.0, 20.0]), min_size=n, max_size=n),
        st.sampled_from(["h100-tp4:2", "h100-tp4:1,a100-tp4:1", "a100-tp2:1,h100-tp8:1"]),
        st.sampled_from(sorted(POLICIES)),
        st.sampled_from(DISPATCHERS),
    )
)


@settings(max_examples=60, deadline=None)
@given(instances)
def test_invariants_on_random_traces(instance):
    """Tests, for every policy and dispatch: each request finishes exactly once after it starts,
    KV use never exceeds a replica's capacity, utilization <= 1, and the makespan is at least
    every lower bound."""
    prompts, outputs, arrivals, fleet, policy, dispatch = instance
    requests, cluster = make_requests(prompts, outputs, arrivals), parse_replicas(fleet)
    plan = solve(requests, cluster, solver="lpt").plan if dispatch in ("plan", "repair") else None
    sim = simulate(requests, cluster, policy=policy, dispatch=dispatch, plan=plan, seed=3)
    table = sim.requests
    assert table["request_id"].is_unique and len(table) == len(requests)
    assert (table["start_s"] >= table["arrival_s"] - 1e-12).all()
    assert (table["first_token_s"] > table["start_s"]).all() and (table["finish_s"] >= table["first_token_s"]).all()
    assert (sim.replicas["peak_kv_tokens"] <= sim.replicas["kv_capacity_tokens"]).all()
    figures = summary(sim, requests)
    assert 0 < figures["utilization"] <= 1 + 1e-9
    bounds, _ = trace_bounds(requests, cluster)
    for value in (bounds.work_s, bounds.chain_s, bounds.pcmax_s):
        assert figures["makespan_s"] >= value * (1 - 1e-9)


def test_following_a_plan_keeps_its_replicas_and_is_deterministic():
    """Tests plan dispatch: every request runs where the plan put it, and two runs give the same result."""
    requests = make_requests(list(range(100, 3100, 100)), list(range(20, 620, 20)))
    cluster = parse_replicas("h100-tp4:2,a100-tp4:2")
    plan = solve(requests, cluster, solver="lpt").plan
    first = simulate(requests, cluster, dispatch="plan", plan=plan)
    merged = first.requests.merge(plan, on="request_id", suffixes=("", "_planned"))
    assert (merged["replica"] == merged["replica_planned"]).all()
    assert first.requests.equals(simulate(requests, cluster, dispatch="plan", plan=plan).requests)


def test_bad_simulation_inputs_are_clear():
    """Tests the errors: unknown policy or dispatch, a plan without plan dispatch, a plan that does
    not match the trace."""
    requests, cluster = make_requests([10, 20], [5, 5]), parse_replicas("h100-tp4")
    with pytest.raises(OptimizerError, match="Unknown batching policy .fcfs.; choose one of: vllm, sarathi, orca, static, s3, uellm, slai, hybrid"):
        simulate(requests, cluster, policy="fcfs")
    with pytest.raises(OptimizerError, match="Unknown dispatch policy 'closest'"):
        simulate(requests, cluster, dispatch="closest")
    plan = solve(requests, cluster, solver="lpt").plan
    with pytest.raises(OptimizerError, match="use --dispatch plan"):
        simulate(requests, cluster, dispatch="round-robin", plan=plan)
    with pytest.raises(PlanError, match="1 requests of the trace are not planned"):
        simulate(requests, cluster, dispatch="plan", plan=plan.iloc[1:].assign(order=0))


@pytest.mark.parametrize("batch", [1, 8, 32, 64])
def test_simulated_iterations_reproduce_the_measurements(batch):
    """Tests fidelity against the GPU measurements: B identical requests (prompt 512, output 128)
    on llama2-70b TP4 H100 give the measured prefill and mean decode iteration times within 5%."""
    from optimizer import read_measurements

    data = read_measurements(builtin_measurements())
    rows = data[(data["model"] == "llama2-70b") & (data["hardware"] == "h100-80gb") & (data["tensor_parallel"] == 4)
                & (data["prompt_size"] == 512) & (data["batch_size"] == batch) & (data["token_size"] == 128)]
    limits = EngineLimits(max_num_seqs=batch, max_num_batched_tokens=512 * batch)
    cluster = Cluster((Replica("r", "h100-80gb", 4, "llama2-70b", limits),))
    table = simulate(make_requests([512] * batch, [128] * batch), cluster, policy="vllm").requests
    first, finish = table["first_token_s"].max(), table["finish_s"].max()
    assert first * 1e3 == pytest.approx(rows["prompt_time"].median(), rel=0.05)
    assert (finish - first) / 127 * 1e3 == pytest.approx(rows["token_time"].median(), rel=0.05)


def builtin_measurements():
    from importlib import resources

    return resources.files("optimizer.fleet").joinpath("data", "splitwise_perf_model.csv")


def _one_replica(**limits):
    return Cluster((Replica("r", "h100-80gb", 4, "llama2-70b", EngineLimits(**limits)),))


def test_s3_batches_by_length_bucket_and_recomputes_mispredictions():
    """Tests S3: requests run in order of predicted length, one micro-batch per length bucket,
    and a request that outruns its prediction is evicted at the batch's end and recomputed."""
    requests = make_requests([100, 100, 100], [300, 30, 200])
    requests["predicted_output_tokens"] = pd.array([300, 10, 200], dtype="Int64")  # the 30 is mispredicted
    table = simulate(requests, parse_replicas("h100-tp4"), policy="s3").requests
    preemptions = table["preemptions"].tolist()
    assert preemptions[0] == preemptions[2] == 0 and preemptions[1] >= 1  # prediction doubles per failure
    # Short bucket first; its mispredicted member is recomputed after the other batches.
    assert table["start_s"].iloc[2] < table["start_s"].iloc[0]
    assert table["finish_s"].iloc[1] > table["finish_s"].iloc[0] > table["finish_s"].iloc[2]


def test_uellm_opens_a_new_batch_when_padding_waste_is_too_high():
    """Tests SLO-ODBS: lengths 100 and 105 share a batch, 5000 opens its own
    ((5000 - 105) x 3 x 1.2 > 15000)."""
    table = simulate(make_requests([50, 50, 50], [100, 105, 5000]), parse_replicas("h100-tp4"), policy="uellm").requests
    assert table["start_s"].iloc[0] == table["start_s"].iloc[1] == 0
    assert table["start_s"].iloc[2] == pytest.approx(table["finish_s"].iloc[1])


def test_slai_prefills_the_shortest_prompt_first():
    """Tests SLAI: of two prompts arriving together, the shorter gets its first token first."""
    table = simulate(make_requests([1000, 100], [5, 5]), parse_replicas("h100-tp4"), policy="slai").requests
    assert table["first_token_s"].iloc[1] < table["first_token_s"].iloc[0]


def test_hybrid_rule_inserts_prefill_only_when_it_pays(monkeypatch):
    """Tests the Lagrangian rule: with a zero price a newcomer waits until decoding ends; with a
    huge price it behaves like vLLM's prefill-first."""
    from optimizer.serving.batching import Hybrid

    requests = make_requests([500, 500], [200, 50], arrivals=[0.0, 1.0])
    cluster = parse_replicas("h100-tp4")
    monkeypatch.setattr(Hybrid, "lagrange", 0.0)
    patient = simulate(requests, cluster, policy="hybrid").requests
    assert patient["start_s"].iloc[1] >= patient["finish_s"].iloc[0] - 1e-9
    monkeypatch.setattr(Hybrid, "lagrange", 1e9)
    eager = simulate(requests, cluster, policy="hybrid").requests
    assert eager.equals(simulate(requests, cluster, policy="vllm").requests)


def test_planner_estimate_matches_the_simulated_plan_on_the_default_batch():
    """Tests the planner's fidelity: following its plan on the bundled batch under Sarathi
    batching, the simulated makespan is within 3% of the estimated one."""
    from pathlib import Path

    from optimizer import load_trace

    requests = load_trace(Path(__file__).parent.parent.parent / "traces" / "sharegpt_batch_2k.csv").requests
    cluster = parse_replicas("h100-tp4:4,a100-tp4:4")
    planned = solve(requests, cluster, solver="scip", time_limit_s=10)
    simulated = summary(simulate(requests, cluster, dispatch="plan", plan=planned.plan), requests)["makespan_s"]
    assert simulated == pytest.approx(planned.objective, rel=0.03)


def test_policy_options_are_named_and_checked():
    """Tests that a policy's named options change its behaviour and that out-of-range or unknown
    options are one clear error."""
    requests, cluster = make_requests([1000, 100], [5, 5]), parse_replicas("h100-tp4")
    small = simulate(requests, cluster, policy="slai", policy_options={"budget_tokens": 64}).requests
    large = simulate(requests, cluster, policy="slai").requests
    assert small["first_token_s"].iloc[0] > large["first_token_s"].iloc[0]  # 64-token chunks take longer
    with pytest.raises(OptimizerError, match="Option budget_tokens of policy 'slai' must be at least 1, got 0"):
        simulate(requests, cluster, policy="slai", policy_options={"budget_tokens": 0})
    with pytest.raises(OptimizerError, match="Policy 'vllm' has no option 'budget_tokens'; its options: none"):
        simulate(requests, cluster, policy="vllm", policy_options={"budget_tokens": 10})
    with pytest.raises(OptimizerError, match="must be a whole number, got 1.5"):
        simulate(requests, cluster, policy="uellm", policy_options={"max_batch": 1.5})
