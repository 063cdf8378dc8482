"""Tests of the planning facade and its heuristics, checked by the independent validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import OptimizerError, load_trace, parse_replicas, plan_violations, solve
from optimizer.estimates import estimate, planning_lengths
from optimizer.solve import SOLVERS

TRACES = Path(__file__).parent.parent / "traces"


def _requests(prompts, outputs, models=None, arrivals=None):
    n = len(prompts)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "arrival_s": np.zeros(n) if arrivals is None else np.asarray(arrivals, dtype=float),
            "prompt_tokens": np.asarray(prompts, dtype=np.int64),
            "output_tokens": pd.array(outputs, dtype="Int64"),
            "predicted_output_tokens": pd.array([pd.NA] * n, dtype="Int64"),
            "model": models if models is not None else [""] * n,
            "priority": np.zeros(n, dtype=np.int64),
        }
    )


instances = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 8192), min_size=n, max_size=n),
        st.lists(st.integers(1, 1024), min_size=n, max_size=n),
        st.lists(st.sampled_from(["", "llama2-70b", "bloom-176b"]), min_size=n, max_size=n),
        st.integers(1, 6),
        st.integers(1, 3),
    )
)


@settings(max_examples=60, deadline=None)
@given(instances, st.sampled_from(sorted(SOLVERS)))
def test_every_plan_is_valid_and_above_the_bound(instance, solver):
    """Tests that on random mixed-model instances every method's plan passes the validator and
    its makespan is at least the lower bound."""
    prompts, outputs, models, num_llama, num_bloom = instance
    cluster = parse_replicas(f"h100-tp4:{num_llama},bloom-176b@h100-tp8:{num_bloom}")
    requests = _requests(prompts, outputs, models)
    result = solve(requests, cluster, solver=solver)
    assert plan_violations(result.plan, requests, cluster) == []
    assert result.lower_bound <= result.objective + 1e-9


def _loads(result, requests, cluster):
    """Sum of planned work per replica, from the estimates the planner used."""
    estimates = estimate(requests, cluster, planning_lengths(requests))
    index = {request_id: j for j, request_id in enumerate(requests["request_id"])}
    rows = result.plan["request_id"].map(index).to_numpy()
    replica = result.plan["replica"].map({name: r for r, name in enumerate(cluster.names)}).to_numpy()
    work = estimates.work_s[rows, estimates.kind_of_replica[replica]]
    return np.bincount(replica, weights=work, minlength=len(cluster)), work


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 8000), min_size=1, max_size=60), st.integers(1, 6))
def test_lpt_keeps_grahams_guarantee(prompts, m):
    """Tests that LPT on identical replicas keeps the list-scheduling guarantee on work:
    the busiest replica carries at most total / m + the largest request."""
    requests = _requests(prompts, [max(1, p // 8) for p in prompts])
    cluster = parse_replicas(f"h100-tp4:{m}")
    loads, work = _loads(solve(requests, cluster, solver="lpt"), requests, cluster)
    assert loads.max() <= work.sum() / m + work.max() + 1e-9


def test_offline_batch_runs_longest_output_first_and_timed_trace_in_arrival_order():
    """Tests the order inside each replica: longest output first offline, arrival order otherwise."""
    cluster = parse_replicas("h100-tp4:2")
    offline = _requests([100] * 6, [5, 900, 40, 700, 1, 300])
    plan = solve(offline, cluster).plan.merge(offline, on="request_id")
    for _, rows in plan.groupby("replica"):
        assert rows.sort_values("order")["output_tokens"].is_monotonic_decreasing
    timed = _requests([100] * 6, [5, 900, 40, 700, 1, 300], arrivals=[5, 0, 3, 1, 4, 2])
    plan = solve(timed, cluster).plan.merge(timed, on="request_id")
    for _, rows in plan.groupby("replica"):
        assert rows.sort_values("order")["arrival_s"].is_monotonic_increasing


def test_same_input_gives_the_same_plan():
    """Tests that planning is deterministic."""
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests
    cluster = parse_replicas("h100-tp4:4,a100-tp4:4")
    first, second = solve(requests, cluster).plan, solve(requests, cluster).plan
    pd.testing.assert_frame_equal(first, second)


def test_lpt_balances_the_default_batch_on_the_mixed_fleet():
    """Tests that on the bundled batch LPT balances work across H100 and A100 replicas within 1%,
    gives the faster H100s more requests, and beats round-robin."""
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests
    cluster = parse_replicas("h100-tp4:4,a100-tp4:4")
    result = solve(requests, cluster)
    loads, _ = _loads(result, requests, cluster)
    assert loads.max() / loads.min() < 1.01
    per_replica = result.plan["replica"].value_counts()
    assert per_replica["h100-tp4-0"] > per_replica["a100-tp4-0"]
    assert result.objective < solve(requests, cluster, solver="round-robin").objective


def test_planning_errors_are_clear():
    """Tests the errors for an unknown solver, an unserved model and unknown output lengths."""
    cluster = parse_replicas("h100-tp4:1")
    with pytest.raises(OptimizerError, match="Unknown solver 'cplex'; choose one of: lpt, round-robin"):
        solve(_requests([1], [1]), cluster, solver="cplex")
    with pytest.raises(OptimizerError, match=r"1 requests \(first 'r1'\) ask for model 'GPT-4', which no replica serves"):
        solve(_requests([1, 2], [1, 2], models=["", "GPT-4"]), cluster)
    with pytest.raises(OptimizerError, match="Request 'r1' has neither output_tokens nor predicted_output_tokens"):
        solve(_requests([1, 2], [1, None]), cluster)
