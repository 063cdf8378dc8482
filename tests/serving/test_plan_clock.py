"""Tests that the repairer follows the plan's own clock: it reacts to a replica falling behind its
planned timeline from a wrong estimate, with every output length exactly as predicted."""

from __future__ import annotations

import numpy as np
from conftest import make_requests

from optimizer import parse_replicas, simulate, solve
from optimizer.fleet.sources import profile_for
from optimizer.serving.plan_clock import PlanClock


def test_plan_clock_by_hand():
    """Tests P_r and the lag on one replica with two requests: 4 s of work planned over 0-4 s,
    then 2 s over 6-8 s. Having done 3 s of work at t = 5, the replica is where the plan was at
    3 s: 2 s behind; having done 4 s at t = 5 it is on time (the plan waits until 6 s)."""
    clock = PlanClock(np.array([0, 0]), np.array([0.0, 6.0]), np.array([4.0, 8.0]), np.array([4.0, 2.0]), 1)
    assert clock.planned_progress(0, 2.0) == 2.0
    assert clock.planned_progress(0, 7.0) == 5.0
    assert clock.lag(0, 5.0, 3.0) == 2.0
    assert clock.lag(0, 5.0, 4.0) == 0.0
    assert clock.lag(0, 9.0, 6.0) == 0.0


def test_repairer_reacts_to_a_wrong_estimate_with_no_length_error():
    """Tests the plan made with a wrong profile (the A100 believed as fast as the H100) and run on
    the true one, every output exactly as long as planned: the A100 falls behind its planned
    timeline, the repairer moves queued work to the H100 and ends well before the plan followed
    blindly."""
    rng = np.random.default_rng(2)
    n = 240
    requests = make_requests(rng.integers(200, 3000, n).tolist(), rng.integers(20, 400, n).tolist())
    cluster = parse_replicas("h100-tp4:1,a100-tp4:1")
    h100, a100 = cluster.replicas
    wrong = {(a100.model, a100.gpu, a100.tp): profile_for(h100)}
    plan = solve(requests, cluster, solver="lpt", profiles=wrong).plan
    blind = simulate(requests, cluster, dispatch="plan", plan=plan)
    repaired = simulate(requests, cluster, dispatch="repair", plan=plan)
    assert repaired.moved_requests > 0
    assert repaired.requests["finish_s"].max() < 0.95 * blind.requests["finish_s"].max()


def test_requests_the_plan_lacks_are_placed_on_arrival_and_finish_once():
    """Tests online arrivals that were not in the plan: the plan covers the first 40 of 60 timed
    requests; repair places the other 20 where they would finish first, every request finishes
    exactly once, the planned ones where the plan put them (nothing deviates but the extra
    work), and following the partial plan blindly is still refused."""
    import pytest

    from optimizer import OptimizerError

    rng = np.random.default_rng(5)
    n = 60
    requests = make_requests(rng.integers(100, 2000, n).tolist(), rng.integers(20, 300, n).tolist(), arrivals=np.arange(n) * 2.0)
    cluster = parse_replicas("h100-tp4:1,a100-tp4:1")
    plan = solve(requests.head(40), cluster, solver="least-loaded").plan
    repaired = simulate(requests, cluster, dispatch="repair", plan=plan)
    table = repaired.requests
    assert table["request_id"].is_unique and len(table) == n and table["finish_s"].notna().all()
    late = table[table["request_id"].isin(requests["request_id"].iloc[40:])]
    assert set(late["replica"]) <= set(cluster.names) and (late["start_s"] >= late["arrival_s"]).all()
    with pytest.raises(OptimizerError):
        simulate(requests, cluster, dispatch="plan", plan=plan)
