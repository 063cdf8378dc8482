"""Tests of the latency objective on tiny timed cases whose best plan is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_requests

from optimizer import parse_replicas, solve, validate_plan
from optimizer.fleet.estimates import estimate, planning_lengths
from optimizer.planning.latency import MAKESPAN_SLACK, queueing_delay


def _pairs():
    """Two replicas, four equal requests: two arrive at 0 s, two at 30 s (each takes a few seconds)."""
    requests = make_requests([1000] * 4, [200] * 4, arrivals=[0.0, 0.0, 30.0, 30.0])
    return requests, parse_replicas("h100-tp4:2")


def test_queueing_delay_of_a_hand_made_assignment():
    """Tests the fluid delay by hand: both requests of time 0 on one replica make the second wait the
    first's whole work; spread over both replicas nobody waits; the 30 s arrivals find an empty queue."""
    requests, cluster = _pairs()
    found = estimate(requests, cluster, planning_lengths(requests))
    work = found.work_s[0, 0]
    assert work < 30  # so the first pair is gone when the second arrives
    assert queueing_delay(np.array([0, 0, 1, 1]), found) == pytest.approx(work)
    assert queueing_delay(np.array([0, 1, 0, 1]), found) == 0.0


@pytest.mark.parametrize("solver", ["cp-sat", "scip"])
def test_latency_plan_splits_simultaneous_arrivals(solver):
    """Tests that the best latency plan, by hand one request of each simultaneous pair per replica
    (no request waits), is what solve finds, with delay 0 proven, a valid plan, and a makespan
    within MAKESPAN_SLACK of the best heuristic's."""
    requests, cluster = _pairs()
    result = solve(requests, cluster, solver=solver, time_limit_s=5, objective="latency", deterministic=True)
    assert result.objective_name == "latency"
    assert result.score == 0.0 and result.score_bound == 0.0
    validate_plan(result.plan, requests, cluster)
    replica = result.plan.set_index("request_id")["replica"]
    assert replica["r0"] != replica["r1"] and replica["r2"] != replica["r3"]
    lpt = solve(requests, cluster, solver="lpt")
    assert result.objective <= lpt.objective * (1 + MAKESPAN_SLACK) + 1e-9


def test_latency_plan_sends_a_burst_to_the_faster_kind_first():
    """Tests a mixed pair (one H100, one A100) with three requests at 0 s and none after: any plan
    makes one of them wait behind another; the least wait is behind the shortest work on the
    faster replica, so the latency plan's delay equals the least work there, and it beats
    putting all three on one replica."""
    requests = make_requests([500, 500, 500], [100, 100, 100], arrivals=[0.0, 0.0, 0.0001])
    cluster = parse_replicas("h100-tp4:1,a100-tp4:1")
    found = estimate(requests, cluster, planning_lengths(requests))
    result = solve(requests, cluster, solver="cp-sat", time_limit_s=5, objective="latency", deterministic=True)
    # By hand: two on the H100 (the second waits one H100 work), one on the A100 (no wait);
    # two on the A100 instead would wait one A100 work, which is longer.
    assert found.work_s[0, 0] < found.work_s[0, 1]
    assert result.score == pytest.approx(found.work_s[0, 0] - 0.0001, abs=1e-6)
    assert (result.plan["replica"] == "h100-tp4-0").sum() == 2
    assert result.score < queueing_delay(np.array([0, 0, 0]), found)


def test_objective_auto_is_makespan_offline_and_latency_with_arrivals():
    """Tests the default objective: makespan for an offline batch (the makespan job is unchanged),
    latency when requests arrive over time; an unknown objective is one clear error."""
    offline = make_requests([300] * 6, [50] * 6)
    cluster = parse_replicas("h100-tp4:2")
    assert solve(offline, cluster, solver="lpt").objective_name == "makespan"
    timed, _ = _pairs()
    assert solve(timed, cluster, solver="lpt").objective_name == "latency"
    with pytest.raises(Exception, match="Unknown objective 'fast'"):
        solve(timed, cluster, objective="fast")


def test_latency_plans_are_deterministic():
    """Tests that the same timed inputs give the same latency plan, byte for byte."""
    rng = np.random.default_rng(4)
    requests = make_requests(rng.integers(50, 3000, 40).tolist(), rng.integers(5, 400, 40).tolist(), arrivals=np.sort(rng.uniform(0, 60, 40)))
    cluster = parse_replicas("h100-tp4:2,a100-tp4:2")
    first = solve(requests, cluster, time_limit_s=3, objective="latency", deterministic=True)
    second = solve(requests, cluster, time_limit_s=3, objective="latency", deterministic=True)
    assert first.plan.equals(second.plan)


def test_slo_plan_meets_every_achievable_target_of_a_hand_made_case():
    """Tests the slo objective by hand: two replicas, the four requests of `_pairs` with a TTFT
    target of their own prefill plus 0.1 s, which only a request that does not wait can meet;
    splitting each simultaneous pair meets all four (share 1), stacking a pair misses one."""
    from optimizer.planning.slo import met_share, tolerances

    requests, cluster = _pairs()
    found = estimate(requests, cluster, planning_lengths(requests))
    requests["ttft_target_s"] = found.prefill_s[:, 0] + 0.1
    tolerance = tolerances(requests, found)
    assert met_share(np.array([0, 0, 1, 1]), found, tolerance) == 0.5
    result = solve(requests, cluster, solver="cp-sat", time_limit_s=5, objective="slo", deterministic=True)
    assert result.objective_name == "slo" and result.score == 1.0
    replica = result.plan.set_index("request_id")["replica"]
    assert replica["r0"] != replica["r1"] and replica["r2"] != replica["r3"]
