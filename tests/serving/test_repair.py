"""Tests of the online repairer and of the deviations the simulator injects."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_requests
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import (
    OptimizerError,
    parse_replicas,
    simulate,
    solve,
    summary,
    trace_bounds,
)
from optimizer.serving.deviation import (
    Deviations,
    Failure,
    Slowdown,
    parse_failure,
    parse_slowdown,
)
from optimizer.serving.dispatch import DISPATCHERS
from optimizer.serving.predictor import LengthBelief, noisy_oracle, with_predictions


def _batch(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return make_requests(rng.integers(100, 3000, n).tolist(), rng.integers(20, 600, n).tolist())


@pytest.mark.parametrize("arrivals", ["offline", "online"])
def test_with_no_deviation_the_repairer_reproduces_the_plan_exactly(arrivals):
    """Tests that when reality matches the predictions, repair runs every request where and when
    following the plan does: the same replicas, order and counts, the same times (to float
    rounding: the repairer's periodic look splits fast-forwarded decode runs), nothing moved."""
    requests = _batch()
    if arrivals == "online":
        requests["arrival_s"] = np.arange(len(requests)) * 0.5
    cluster = parse_replicas("h100-tp4:2,a100-tp4:2")
    plan = solve(requests, cluster, solver="cp-sat", time_limit_s=2).plan
    followed = simulate(requests, cluster, dispatch="plan", plan=plan)
    repaired = simulate(requests, cluster, dispatch="repair", plan=plan)
    assert repaired.moved_requests == 0
    ours, theirs = repaired.requests, followed.requests
    for column in ("request_id", "replica", "arrival_s", "preemptions", "restarts"):
        assert ours[column].equals(theirs[column])
    for column in ("start_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-12, atol=1e-9)
    merged = repaired.requests.merge(plan, on="request_id", suffixes=("", "_planned"))
    assert (merged["replica"] == merged["replica_planned"]).all()


def test_repairer_moves_work_off_a_replica_whose_requests_run_long():
    """Tests the repair itself: all requests are predicted at 400 tokens, but those planned on
    one replica run 600 and the others 200; the repairer moves queued work to the replica that
    runs ahead and finishes well before the plan followed blindly."""
    requests = make_requests([500] * 400, [400] * 400)  # 200 a replica: more than fit in a batch
    cluster = parse_replicas("h100-tp4:2")
    plan = solve(requests, cluster, solver="lpt").plan
    on_first = requests["request_id"].isin(plan.loc[plan["replica"] == "h100-tp4-0", "request_id"])
    actual = requests.assign(output_tokens=np.where(on_first, 600, 200)).astype({"output_tokens": "Int64"})
    planned = with_predictions(actual, np.full(400, 400))
    blind = simulate(planned, cluster, dispatch="plan", plan=plan)
    repaired = simulate(planned, cluster, dispatch="repair", plan=plan)
    assert repaired.moved_requests > 0
    assert repaired.requests["finish_s"].max() < 0.9 * blind.requests["finish_s"].max()


def test_repairer_moves_work_off_a_slow_replica():
    """Tests that a replica slowed threefold from the start loses queued work to the others."""
    requests, cluster = _batch(), parse_replicas("h100-tp4:2")
    plan = solve(requests, cluster, solver="lpt").plan
    slow = Deviations(slowdowns=(Slowdown("h100-tp4-0", 0.0, 3.0),))
    blind = simulate(requests, cluster, dispatch="plan", plan=plan, deviations=slow)
    repaired = simulate(requests, cluster, dispatch="repair", plan=plan, deviations=slow)
    assert (repaired.requests["replica"] == "h100-tp4-0").sum() < (blind.requests["replica"] == "h100-tp4-0").sum()
    assert repaired.requests["finish_s"].max() < 0.8 * blind.requests["finish_s"].max()


def test_slowdown_scales_iteration_times_from_its_start():
    """Tests a hand-checkable slowdown: a lone request on a replica twice as slow from time 0
    takes exactly twice as long."""
    requests, cluster = make_requests([1000], [50]), parse_replicas("h100-tp4:1")
    normal = simulate(requests, cluster)
    slow = simulate(requests, cluster, deviations=Deviations(slowdowns=(Slowdown("h100-tp4-0", 0.0, 2.0),)))
    assert slow.requests["finish_s"].iloc[0] == pytest.approx(2 * normal.requests["finish_s"].iloc[0], rel=1e-12)


def test_a_failed_replicas_requests_restart_elsewhere_and_finish_once():
    """Tests a failure: the requests running on the failed replica restart on the other one, the
    work they lose is counted, every request finishes exactly once and nothing finishes on the
    failed replica after it failed."""
    requests, cluster = _batch(40), parse_replicas("h100-tp4:2")
    baseline = simulate(requests, cluster, dispatch="round-robin")
    at_s = float(baseline.requests["finish_s"].max()) / 3
    failed = simulate(requests, cluster, dispatch="round-robin", deviations=Deviations(failures=(Failure("h100-tp4-0", at_s),)))
    table = failed.requests
    assert table["request_id"].is_unique and len(table) == len(requests) and table["finish_s"].notna().all()
    assert failed.restarted_requests == int((table["restarts"] > 0).sum()) > 0
    assert failed.redone_tokens > 0
    assert (table.loc[table["restarts"] > 0, "replica"] == "h100-tp4-1").all()
    on_failed = table[table["replica"] == "h100-tp4-0"]
    assert (on_failed["finish_s"] <= at_s + 1.0).all()  # the failure shows at an iteration boundary
    assert summary(failed, requests)["failed_replicas"] == ["h100-tp4-0"]


def test_arrival_jitter_is_seeded_and_never_negative():
    """Tests that jittered arrivals are reproducible, differ by seed and never precede time 0."""
    planned = np.zeros(1000)
    first = Deviations(arrival_jitter_s=2.0, seed=1).arrivals(planned)
    assert np.array_equal(first, Deviations(arrival_jitter_s=2.0, seed=1).arrivals(planned))
    assert not np.array_equal(first, Deviations(arrival_jitter_s=2.0, seed=2).arrivals(planned))
    assert first.min() == 0.0 and first.max() > 0


def test_bad_deviations_are_clear():
    """Tests the errors for deviations that cannot be run."""
    cluster = parse_replicas("h100-tp4:2")
    with pytest.raises(OptimizerError, match="No replica named 'x'"):
        Deviations(failures=(Failure("x", 1.0),)).check(cluster)
    with pytest.raises(OptimizerError, match="Every replica serving llama2-70b fails"):
        Deviations(failures=(Failure("h100-tp4-0", 1.0), Failure("h100-tp4-1", 2.0))).check(cluster)
    with pytest.raises(OptimizerError, match="REPLICA@SECONDS:FACTOR"):
        parse_slowdown("h100-tp4-0@5")
    with pytest.raises(OptimizerError, match="REPLICA@SECONDS"):
        parse_failure("h100-tp4-0")
    assert parse_slowdown("h100-tp4-0@60:1.5") == Slowdown("h100-tp4-0", 60.0, 1.5)
    with pytest.raises(OptimizerError, match="Option max_moves of dispatch 'repair' must be a whole number"):
        simulate(make_requests([10], [5]), cluster, dispatch="repair", plan=solve(make_requests([10], [5]), cluster, solver="lpt").plan,
                 dispatch_options={"max_moves": 1.5})


deviated = st.integers(min_value=2, max_value=20).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 4000), min_size=n, max_size=n),
        st.lists(st.integers(1, 400), min_size=n, max_size=n),
        st.sampled_from([0.0, 2.0]),  # arrival spread
        st.sampled_from([0.0, 0.5, 1.0]),  # length error sigma
        st.sampled_from([0.0, 3.0]),  # arrival jitter
        st.sampled_from([None, (0.0, 2.0), (5.0, 1.5)]),  # slowdown of replica 1
        st.sampled_from([None, 0.0, 2.0, 10.0]),  # failure time of replica 0
        st.sampled_from(DISPATCHERS),
        st.integers(0, 3),
    )
)


@settings(max_examples=40, deadline=None)
@given(deviated)
def test_invariants_hold_under_random_deviations(instance):
    """Tests, for every dispatch under random length errors, jitter, slowdowns and failures:
    every request finishes exactly once and after it arrives, KV use stays within capacity,
    utilization <= 1, and the makespan is at least the hindsight lower bounds of the real arrivals."""
    prompts, outputs, spread, sigma, jitter, slowdown, failure, dispatch, seed = instance
    requests = make_requests(prompts, outputs, arrivals=np.linspace(0, spread, len(prompts)))
    cluster = parse_replicas("h100-tp4:2,a100-tp4:1")
    planned = with_predictions(requests, noisy_oracle(requests["output_tokens"].to_numpy(), sigma, seed))
    deviations = Deviations(
        arrival_jitter_s=jitter,
        slowdowns=() if slowdown is None else (Slowdown("h100-tp4-1", *slowdown),),
        failures=() if failure is None else (Failure("h100-tp4-0", failure),),
        seed=seed,
    )
    plan = solve(planned, cluster, solver="lpt").plan if dispatch in ("plan", "repair") else None
    sim = simulate(planned, cluster, dispatch=dispatch, plan=plan, seed=seed, deviations=deviations, belief=LengthBelief.lognormal(sigma))
    table = sim.requests
    assert table["request_id"].is_unique and len(table) == len(requests) and table["finish_s"].notna().all()
    assert (table["start_s"] >= table["arrival_s"] - 1e-12).all() and (table["finish_s"] >= table["first_token_s"]).all()
    assert (sim.replicas["peak_kv_tokens"] <= sim.replicas["kv_capacity_tokens"]).all()
    assert 0 < summary(sim, requests)["utilization"] <= 1 + 1e-9
    real = requests.assign(arrival_s=table["arrival_s"].to_numpy())
    bounds, _ = trace_bounds(real, cluster)
    assert table["finish_s"].max() >= bounds.best_s * (1 - 1e-9)


def test_plans_without_planned_times_can_be_followed_and_repaired():
    """Tests that a plan whose planned times are empty (as `read_plan` gives a hand-written plan
    of request_id, replica and order) drives both plan and repair dispatch."""
    requests, cluster = _batch(20), parse_replicas("h100-tp4:2")
    plan = solve(requests, cluster, solver="lpt").plan.assign(planned_start_s=np.nan, planned_end_s=np.nan)
    followed = simulate(requests, cluster, dispatch="plan", plan=plan)
    repaired = simulate(requests, cluster, dispatch="repair", plan=plan)
    assert followed.requests["replica"].equals(repaired.requests["replica"])
    assert repaired.requests["finish_s"].notna().all()
