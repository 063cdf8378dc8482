"""Tests of the planning facade and its heuristics, checked by the independent validator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathlib import Path

from optimizer import OptimizerError, load_trace, parse_replicas, plan_violations, solve
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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=60), st.integers(1, 8))
def test_lpt_keeps_grahams_guarantee(costs, m):
    """Tests that LPT on identical replicas is within (2 - 1/m) of the lower bound, and never worse
    than round-robin by more than that."""
    requests = _requests([c for c in costs], [1] * len(costs))
    cluster = parse_replicas(f"h100-tp4:{m}")
    lpt = solve(requests, cluster, solver="lpt")
    assert lpt.objective <= (2 - 1 / m) * lpt.lower_bound + 1e-9


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


def test_lpt_balances_the_default_batch():
    """Tests that LPT on the bundled 2,000-request batch is within 0.1% of the token lower bound."""
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests
    result = solve(requests, parse_replicas("h100-tp4:4,a100-tp4:4"))
    assert result.ratio_to_bound < 1.001


def test_planning_errors_are_clear():
    """Tests the errors for an unknown solver, an unserved model and unknown output lengths."""
    cluster = parse_replicas("h100-tp4:1")
    with pytest.raises(OptimizerError, match="Unknown solver 'cplex'; choose one of: lpt, round-robin"):
        solve(_requests([1], [1]), cluster, solver="cplex")
    with pytest.raises(OptimizerError, match="ask for model 'GPT-4', which no replica serves"):
        solve(_requests([1, 2], [1, 2], models=["", "GPT-4"]), cluster)
    with pytest.raises(OptimizerError, match="Request 'r1' has neither output_tokens nor predicted_output_tokens"):
        solve(_requests([1, 2], [1, None]), cluster)
