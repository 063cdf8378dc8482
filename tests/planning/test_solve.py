"""Tests of the planner: heuristics and every solver backend, checked by the independent validator."""

from __future__ import annotations

import time
from dataclasses import replace
import faulthandler
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import OptimizerError, load_trace, parse_replicas, plan_violations, solve
from optimizer.fleet.estimates import estimate, planning_lengths
from optimizer.planning.backends import _in_child_process
from optimizer.planning.bounds import work_bound
from optimizer.planning.pcmax import read_pcmax, solve_pcmax
from optimizer.planning.solve import HEURISTICS

TRACES = Path(__file__).parent.parent.parent / "traces"
DATA = Path(__file__).parent.parent / "data" / "pcmax"

instances = st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 8000), min_size=n, max_size=n),
        st.lists(st.integers(1, 1000), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.0, 2.0, 20.0]), min_size=n, max_size=n),
        st.lists(st.sampled_from(["", "llama2-70b", "bloom-176b"]), min_size=n, max_size=n),
        st.sampled_from(["h100-tp4:2,bloom-176b@h100-tp8:1", "h100-tp4:1,a100-tp4:1,bloom-176b@a100-tp8:1"]),
    )
)


@settings(max_examples=40, deadline=None)
@given(instances, st.sampled_from(sorted(HEURISTICS)))
def test_every_heuristic_plan_is_valid_and_above_the_bound(instance, solver):
    """Tests that on random mixed-model instances each heuristic's plan passes the validator and
    its estimated makespan is at least the lower bound."""
    prompts, outputs, arrivals, models, fleet = instance
    requests, cluster = make_requests(prompts, outputs, arrivals, models), parse_replicas(fleet)
    result = solve(requests, cluster, solver=solver)
    assert plan_violations(result.plan, requests, cluster) == []
    assert result.lower_bound <= result.objective * (1 + 1e-9)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instance=instances)
def test_solver_sits_between_bound_and_heuristics(backend, instance):
    """Tests, on every backend, lower bound <= solver objective <= every heuristic's objective,
    and that the solver's plan passes the validator."""
    prompts, outputs, arrivals, models, fleet = instance
    requests, cluster = make_requests(prompts, outputs, arrivals, models), parse_replicas(fleet)
    result = solve(requests, cluster, solver=backend, time_limit_s=1.0)
    assert plan_violations(result.plan, requests, cluster) == []
    assert result.lower_bound <= result.objective * (1 + 1e-9)
    for heuristic in HEURISTICS:
        assert result.objective <= solve(requests, cluster, solver=heuristic).objective * (1 + 1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.integers(1, 100), min_size=2, max_size=14), m=st.integers(2, 4))
def test_lpt_is_within_grahams_ratio_of_the_proven_optimum(backend, times, m):
    """Tests that on identical machines, whenever the solver proves optimality, LPT is within
    4/3 - 1/(3m) of that optimum (and the solver is never worse than LPT)."""
    times = np.array(times, dtype=float)
    exact = solve_pcmax(m, times, solver=backend, time_limit_s=1.0)
    lpt = solve_pcmax(m, times, solver="lpt")
    assert exact.makespan <= lpt.makespan
    assert exact.lower_bound <= exact.makespan
    if exact.status == "OPTIMAL":
        assert lpt.makespan <= (4 / 3 - 1 / (3 * m)) * exact.makespan + 1e-9


def test_solver_beats_lpt_and_proves_optimality_on_a_textbook_instance(backend):
    """Tests the case where LPT is known to be off: 3,3,2,2,2 on two machines, LPT 7, optimum 6."""
    result = solve_pcmax(2, np.array([3.0, 3, 2, 2, 2]), solver=backend, time_limit_s=10.0)
    assert solve_pcmax(2, np.array([3.0, 3, 2, 2, 2]), solver="lpt").makespan == 7
    assert (result.makespan, result.lower_bound, result.status) == (6, 6, "OPTIMAL")


def test_few_requests_per_replica_improve_on_lpt(backend):
    """Tests that with 2-3 requests per identical replica the per-request MIP beats LPT and proves it."""
    prompts = [4000, 4000, 3000, 3000, 3000, 2200, 2200, 2100, 1200]
    requests = make_requests(prompts, [2] * len(prompts))
    cluster = parse_replicas("h100-tp4:4")
    lpt = solve(requests, cluster, solver="lpt")
    result = solve(requests, cluster, solver=backend, time_limit_s=10.0)
    assert result.formulation == "per-request"
    assert result.objective < lpt.objective * (1 - 1e-3)
    assert result.status == "OPTIMAL"


def test_class_model_closes_the_mixed_fleet_gap_on_the_default_batch():
    """Tests that on the bundled batch on 4 H100 + 4 A100 the class MIP's load is within 0.1% of the
    fractional assignment of the same planning works (the makespan adds the final drain, which
    the assignment does not see), where LPT's is about 2% above it."""
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests
    cluster = parse_replicas("h100-tp4:4,a100-tp4:4")
    estimates = estimate(requests, cluster, planning_lengths(requests))
    drain = estimates.drain_s.max()
    fractional = work_bound(replace(estimates, min_work_s=estimates.work_s))
    result = solve(requests, cluster, solver="scip", time_limit_s=10)
    assert result.formulation == "class"
    assert (result.objective - drain) / fractional < 1.001
    lpt = solve(requests, cluster, solver="lpt")
    assert (lpt.objective - drain) / fractional > 1.01
    assert plan_violations(result.plan, requests, cluster) == []


@pytest.mark.parametrize("rows, formulation", [(slice(0, 30), "per-request"), (slice(0, 400), "class")])
def test_same_input_gives_the_same_plan(rows, formulation):
    """Tests that the default solver is deterministic on both formulations: the same inputs and
    seed give the same plan (CP-SAT stops on deterministic work, well before the wall-clock cap)."""
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests.iloc[rows]
    cluster = parse_replicas("h100-tp4:2,a100-tp4:2")
    first = solve(requests, cluster, solver="cp-sat", time_limit_s=10)
    assert first.formulation == formulation
    pd.testing.assert_frame_equal(first.plan, solve(requests, cluster, solver="cp-sat", time_limit_s=10).plan)


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
def test_lpt_keeps_grahams_list_scheduling_guarantee(prompts, m):
    """Tests that LPT on identical replicas keeps the list-scheduling guarantee on work:
    the busiest replica carries at most total / m + the largest request."""
    requests = make_requests(prompts, [max(1, p // 8) for p in prompts])
    cluster = parse_replicas(f"h100-tp4:{m}")
    loads, work = _loads(solve(requests, cluster, solver="lpt"), requests, cluster)
    assert loads.max() <= work.sum() / m + work.max() + 1e-9


def test_offline_batch_runs_longest_first_and_timed_trace_in_arrival_order():
    """Tests the order inside each replica: longest first offline, arrival order otherwise."""
    cluster = parse_replicas("h100-tp4:2")
    offline = make_requests([100] * 6, [5, 900, 40, 700, 1, 300])
    plan = solve(offline, cluster, solver="lpt").plan.merge(offline, on="request_id")
    for _, rows in plan.groupby("replica"):
        assert rows.sort_values("order")["output_tokens"].is_monotonic_decreasing
    timed = make_requests([100] * 6, [5, 900, 40, 700, 1, 300], arrivals=[5, 0, 3, 1, 4, 2])
    plan = solve(timed, cluster, solver="lpt").plan.merge(timed, on="request_id")
    for _, rows in plan.groupby("replica"):
        assert rows.sort_values("order")["arrival_s"].is_monotonic_increasing


def test_a_solver_that_overruns_is_killed():
    """Tests that a backend running in a child process is stopped at its limit and reported as
    having no solution, so the planner falls back to its incumbent."""
    result = _in_child_process(_sleep_forever, None, time.perf_counter() + 0.2)
    assert result.status == "NO_SOLUTION" and result.values is None


def _sleep_forever(model, deadline, report):
    time.sleep(3600)


def _abort(model, deadline, report):
    faulthandler.disable()  # pytest's fault handler would print the child's stack: the abort is intended
    os.abort()


def test_a_solver_that_aborts_leaves_a_failure_line_not_a_dead_process():
    """Tests that a solver crashing its process (as CP-SAT 9.15 did with SIGABRT) is reported as
    FAILED with one line, and the caller carries on."""
    result = _in_child_process(_abort, None, time.perf_counter() + 30)
    assert result.status == "FAILED" and result.values is None
    assert "exit code -6" in result.message and "\n" not in result.message


def test_incumbent_within_the_stop_test_of_the_bound_does_not_crash():
    """Tests the regenerated E2 instance (n=100, m=2, LPT 2 units above the bound) that made
    CP-SAT abort the process: `pcmax` now returns a plan no worse than LPT."""
    m, times = read_pcmax(DATA / "e2_100_2_9.txt")
    result = solve_pcmax(m, times, time_limit_s=5)
    assert result.makespan <= 24392 and result.lower_bound <= result.makespan


def test_planning_errors_are_clear():
    """Tests the errors for an unknown solver, a bad time limit, an unserved model and unknown lengths."""
    cluster = parse_replicas("h100-tp4:1")
    with pytest.raises(OptimizerError, match=r"Unknown solver 'cplex'; choose one of: cp-sat, .*lpt, least-loaded, round-robin"):
        solve(make_requests([1], [1]), cluster, solver="cplex")
    with pytest.raises(OptimizerError, match="time limit must be greater than 0 seconds, got 0"):
        solve(make_requests([1], [1]), cluster, time_limit_s=0)
    with pytest.raises(OptimizerError, match=r"1 request \(first 'r1'\) asks for model 'GPT-4', which no replica serves"):
        solve(make_requests([1, 2], [1, 2], models=["", "GPT-4"]), cluster)
    with pytest.raises(OptimizerError, match="Request 'r1' has neither output_tokens nor predicted_output_tokens"):
        solve(make_requests([1, 2], [1, None]), cluster)
