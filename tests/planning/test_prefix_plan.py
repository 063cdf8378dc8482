"""Tests of the prefix groups and the prefix-aware planner."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import make_requests

from optimizer import parse_replicas, simulate, solve, validate_plan
from optimizer.planning.prefix_groups import prefix_groups
from optimizer.traces.prefixes import prefix_chains, prefix_units


def leveled(prompts, outputs, groups, ends) -> pd.DataFrame:
    requests = make_requests(prompts, outputs)
    requests["prefix_group"] = pd.Series(groups, dtype=str)
    requests["prefix_tokens"] = pd.Series([tuple(e) for e in ends], dtype=object)
    return requests


def test_groups_are_the_roots_below_a_common_preamble():
    """Tests the grouping by hand: eight requests behind a 320-token preamble (20 blocks), in
    two questions of 3 samples and two requests alone, on 2 replicas. The preamble is common
    (8 users > 8 / 2); the questions are groups sharing their 480 and 640 tokens past it;
    a sample can reuse its preamble and question blocks but its last block."""
    prompts = [800, 800, 800, 960, 960, 960, 500, 700]
    groups = ["f/a"] * 3 + ["f/b"] * 3 + ["f/c", "f/d"]
    ends = [(320, 800)] * 3 + [(320, 960)] * 3 + [(320, 500), (320, 700)]
    requests = leveled(prompts, [10] * 8, groups, ends)
    found = prefix_groups(prefix_units(prefix_chains(requests), 16), np.array(prompts), 2)
    assert found.of_request.tolist() == [0, 0, 0, 1, 1, 1, -1, -1]
    assert found.shared_tokens.tolist() == [480, 640]
    assert found.common_tokens == 320
    assert found.reusable_tokens.tolist() == [784, 784, 784, 944, 944, 944, 320, 320]


def test_prefix_aware_plan_keeps_groups_together_and_beats_the_blind_plan():
    """Tests the planner on four prompts of 6,000 tokens, 4 samples each, on 2 replicas:
    the group MIP puts each prompt's samples on one replica (two groups each), the plan
    passes the validator, and simulated with the cache it finishes before the blind plan,
    never below the bound with reuse."""
    requests = leveled([6000] * 16, [30] * 16, [f"q{i // 4}" for i in range(16)], [(6000,)] * 16)
    cluster = parse_replicas("h100-tp4:2")
    aware = solve(requests, cluster, time_limit_s=5, deterministic=True)
    blind = solve(requests, cluster, time_limit_s=5, deterministic=True, prefix_cache=False)
    validate_plan(aware.plan, requests, cluster)
    assert aware.formulation == "prefix-group"
    placed = aware.plan.set_index("request_id").loc[requests["request_id"], "replica"].to_numpy()
    assert all(len(set(placed[i * 4 : i * 4 + 4])) == 1 for i in range(4))
    assert sorted(pd.Series(placed).value_counts().tolist()) == [8, 8]
    on_aware = simulate(requests, cluster, dispatch="plan", plan=aware.plan).requests["finish_s"].max()
    on_blind = simulate(requests, cluster, dispatch="plan", plan=blind.plan).requests["finish_s"].max()
    assert aware.lower_bound <= on_aware < on_blind


def test_prefix_aware_planner_runs_on_every_backend(backend):
    """Tests that the group MIP solves on each available backend and gives a valid plan."""
    requests = leveled([3000] * 12 + [500] * 4, [40] * 16, [f"q{i // 3}" for i in range(12)] + [""] * 4,
                       [(3000,)] * 12 + [()] * 4)
    cluster = parse_replicas("h100-tp4:1,a100-tp4:1")
    result = solve(requests, cluster, solver=backend, time_limit_s=5, deterministic=True)
    validate_plan(result.plan, requests, cluster)
    assert result.lower_bound <= result.objective


def test_prefix_aware_plans_are_the_same_bytes_every_time(tmp_path):
    """Tests determinism: the same trace and seed give byte-identical prefix-aware plan files."""
    from optimizer import write_plan

    requests = leveled([2000] * 12 + [300] * 6, [40] * 12 + [90] * 6, [f"q{i // 4}" for i in range(12)] + [""] * 6,
                       [(2000,)] * 12 + [()] * 6)
    cluster = parse_replicas("h100-tp4:1,a100-tp4:2")
    for name in ("a.csv", "b.csv"):
        write_plan(solve(requests, cluster, time_limit_s=5, deterministic=True, seed=3).plan, tmp_path / name)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_timed_traces_are_planned_with_their_releases():
    """Tests a timed trace (four prompts' samples arriving over 40 s): the plan is valid, its
    estimate is no worse than the blind LPT plan's under the same reuse model (that plan is
    one of the candidates), and the simulation ends no earlier than the bound."""
    from optimizer.fleet.estimates import estimate, planning_lengths
    from optimizer.planning.prefix_plan import reuse_costs, reuse_makespan

    requests = leveled([3000] * 16, [60] * 16, [f"q{i % 4}" for i in range(16)], [(3000,)] * 16)
    requests["arrival_s"] = np.arange(16) * 2.5
    cluster = parse_replicas("h100-tp4:2")
    aware = solve(requests, cluster, time_limit_s=4, deterministic=True)
    blind = solve(requests, cluster, solver="lpt", prefix_cache=False)
    validate_plan(aware.plan, requests, cluster)
    estimates = estimate(requests, cluster, planning_lengths(requests))
    costs = reuse_costs(requests, cluster, estimates)
    replica = {name: r for r, name in enumerate(cluster.names)}
    blind_assignment = blind.plan.set_index("request_id").loc[requests["request_id"], "replica"].map(replica).to_numpy()
    assert aware.objective <= reuse_makespan(blind_assignment, costs, estimates) + 1e-9
    assert aware.lower_bound <= simulate(requests, cluster, dispatch="plan", plan=aware.plan).requests["finish_s"].max()
