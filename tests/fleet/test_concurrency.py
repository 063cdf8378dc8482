"""Tests that the best batch B* follows the load a replica really sees (the fluid backlog model)."""

from __future__ import annotations

import numpy as np
from conftest import make_requests

from optimizer import parse_replicas, simulate, solve, summary
from optimizer.fleet.estimates import estimate, hindsight_lengths, planning_lengths

CLUSTER = "h100-tp4:2"


def _batch(arrivals, prompts=None, outputs=None):
    n = len(arrivals)
    return make_requests(prompts or [500] * n, outputs or [300] * n, arrivals=arrivals)


def test_offline_batch_runs_full_batches_of_its_share():
    """Tests the offline case by hand: 40 requests on 2 replicas hold 20 each at once (below the limits)."""
    requests = _batch([0.0] * 40)
    found = estimate(requests, parse_replicas(CLUSTER), planning_lengths(requests))
    assert found.batch_size.tolist() == [20]


def test_sparse_arrivals_run_one_at_a_time_and_overload_fills_the_batch():
    """Tests both ends: one request every 100 s (each done in a few seconds) keeps B* = 1; the
    same requests arriving 100 times faster than a replica serves them queue up and fill the
    batch to (nearly: the queue builds up first) its cap B_cap."""
    sparse = _batch(np.arange(60) * 100.0)
    cluster = parse_replicas(CLUSTER)
    assert estimate(sparse, cluster, planning_lengths(sparse)).batch_size.tolist() == [1]
    flood = _batch(np.arange(600) * 0.01)
    found = estimate(flood, cluster, planning_lengths(flood))
    assert 0.9 * found.batch_cap[0] <= found.batch_size[0] <= found.batch_cap[0]
    assert found.batch_cap[0] > 16


def test_batch_grows_with_the_arrival_rate():
    """Tests monotonicity: the same requests arriving faster never get a smaller B*."""
    cluster = parse_replicas(CLUSTER)
    sizes = []
    for gap_s in (20.0, 5.0, 1.0, 0.2, 0.05):
        requests = _batch(np.arange(200) * gap_s)
        sizes.append(int(estimate(requests, cluster, planning_lengths(requests)).batch_size[0]))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_prompt_heavy_traffic_never_fills_the_batch():
    """Tests the prefill limit by hand: prompts of 4,000 tokens with 5-token outputs; a chunk of
    C tokens starts about C / 4,005 requests an iteration, each decoding 4 steps, so at most
    ceil(4 C / 4,004) sequences decode at once, however long the queue."""
    requests = _batch([0.0] * 400, prompts=[4000] * 400, outputs=[5] * 400)
    found = estimate(requests, parse_replicas(CLUSTER), planning_lengths(requests))
    from optimizer.fleet.estimates import best_chunk_tokens
    from optimizer.fleet.sources import profile_for

    replica = parse_replicas(CLUSTER).replicas[0]
    chunk = best_chunk_tokens(profile_for(replica), replica.limits.max_num_batched_tokens)
    assert found.batch_size[0] == int(np.ceil(4 * chunk / (4000 + 4)))


def test_estimates_hold_under_load_and_work_utilization_stays_below_one():
    """Tests the point of it: under overload (arrivals much faster than the fleet serves them) the
    planner's estimated makespan is within 3% of the simulated one, and work utilization, priced
    at least works, never passes busy-time utilization or 100%."""
    rng = np.random.default_rng(1)
    n = 300
    requests = make_requests(rng.integers(100, 1500, n).tolist(), rng.integers(50, 500, n).tolist(), arrivals=np.sort(rng.uniform(0, 20, n)))
    cluster = parse_replicas(CLUSTER)
    plan = solve(requests, cluster, solver="least-loaded")
    simulated = simulate(requests, cluster, dispatch="plan", plan=plan.plan)
    figures = summary(simulated, requests, estimate(requests, cluster, hindsight_lengths(requests)))
    assert abs(figures["makespan_s"] / plan.objective - 1) < 0.03
    assert figures["work_utilization"] <= figures["utilization"] <= 1.0
