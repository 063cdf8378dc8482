"""Tests of the exact P||Cmax core: bounds against brute force, heuristics and local search, the
binary search's certificate, the instance reader, and the `pcmax` command."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import OptimizerError
from optimizer.planning.exact import fits, solve_exact
from optimizer.planning.incumbent import karmarkar_karp, local_search, lpt, makespan, multifit
from optimizer.planning.makespan_bounds import bins_needed, l0_bound, lower_bound
from optimizer.planning.pcmax import read_pcmax, solve_pcmax

DATA = Path(__file__).parent.parent / "data" / "pcmax"

tiny = st.integers(1, 4).flatmap(lambda m: st.tuples(st.just(m), st.lists(st.integers(1, 40), min_size=1, max_size=7)))


def brute_force(times: list[int], m: int) -> int:
    """The optimal makespan by trying every assignment."""
    return min(int(np.bincount(a, weights=times, minlength=m).max()) for a in itertools.product(range(m), repeat=len(times)))


def brute_bins(times: list[int], capacity: int) -> int:
    """The fewest bins of `capacity` that hold the jobs, by trying every assignment."""
    for bins in range(1, len(times) + 1):
        for a in itertools.product(range(bins), repeat=len(times)):
            if np.bincount(a, weights=times, minlength=bins).max() <= capacity:
                return bins
    return len(times) + 1


@settings(max_examples=150, deadline=None)
@given(tiny)
def test_every_bound_is_below_the_brute_force_optimum(instance):
    """Tests that L0 and the bin-packing bound with lifting never exceed the optimum found by
    trying every assignment."""
    m, times = instance
    optimum = brute_force(times, m)
    assert l0_bound(np.array(times), m) <= optimum
    assert lower_bound(np.array(times), m) <= optimum
    assert lower_bound(np.array(times), m, upper=optimum) <= optimum


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=6), st.integers(1, 60))
def test_bin_count_bound_is_below_the_brute_force_bin_count(times, capacity):
    """Tests that Martello-Toth L2 never asks for more bins than the best packing uses."""
    assert bins_needed(np.array(times), capacity) <= brute_bins(times, capacity)


@settings(max_examples=100, deadline=None)
@given(tiny, st.sampled_from(["lpt", "multifit", "kk", "random"]), st.integers(0, 1000))
def test_local_search_never_worsens_its_input(instance, rule, seed):
    """Tests that local search from any schedule (each rule's, or a random one) returns a
    schedule of every job with a makespan no larger."""
    m, times = instance
    p = np.array(times)
    start = {"lpt": lambda: lpt(p, m), "multifit": lambda: multifit(p, m), "kk": lambda: karmarkar_karp(p, m),
             "random": lambda: np.random.default_rng(seed).integers(0, m, len(p))}[rule]()
    improved = local_search(p, start, m)
    assert improved.shape == start.shape and improved.min() >= 0 and improved.max() < m
    assert makespan(p, improved, m) <= makespan(p, start, m)


@settings(max_examples=60, deadline=None)
@given(tiny)
def test_binary_search_is_optimal_and_its_plan_meets_its_bound(instance):
    """Tests that on tiny instances the exact core proves optimality, that an OPTIMAL result's
    makespan equals its proven bound and the brute-force optimum, and that the schedule's loads
    give that makespan (the validator of a P||Cmax schedule)."""
    m, times = instance
    found = solve_exact(np.array(times), m, deterministic_limit_s=2.0)
    loads = np.bincount(found.assignment, weights=times, minlength=m)
    assert len(found.assignment) == len(times) and found.assignment.min() >= 0 and found.assignment.max() < m
    assert loads.max() == found.makespan
    assert found.optimal and found.makespan == found.lower_bound == brute_force(times, m)


@pytest.mark.parametrize("arc_flow", [True, False])
def test_feasibility_probe_answers_yes_and_no_correctly(monkeypatch, arc_flow):
    """Tests the bin-packing probe with both models: 3,3,2,2,2 fit on 2 machines of 6 (3+3, 2+2+2)
    but not of 5."""
    if not arc_flow:
        monkeypatch.setattr("optimizer.planning.exact.MAX_ARCS", 0)
    times = np.array([3, 3, 2, 2, 2])
    status, assignment, _, _ = fits(times, 2, 6, deterministic_limit_s=5.0)
    assert status == "FEASIBLE" and np.bincount(assignment, weights=times, minlength=2).max() <= 6
    assert fits(times, 2, 5, deterministic_limit_s=5.0)[0] == "INFEASIBLE"


def test_exact_core_beats_lpt_where_lpt_is_not_optimal():
    """Tests the textbook case where LPT is 4/3 off: 3,3,2,2,2 on 2 machines, LPT 7, optimum 6."""
    found = solve_pcmax(2, np.array([3, 3, 2, 2, 2]), time_limit_s=5)
    assert found.lpt_makespan == 7 and found.makespan == 6 and found.status == "OPTIMAL"


def test_literature_instance_that_crashed_is_solved_to_optimality():
    """Tests the regenerated E2 instance that aborted CP-SAT: proven optimal at its bound 24390."""
    m, times = read_pcmax(DATA / "e2_100_2_9.txt")
    found = solve_pcmax(m, times, time_limit_s=5)
    assert (found.makespan, found.lower_bound, found.status) == (24390, 24390, "OPTIMAL")


def test_reader_accepts_the_common_format_and_headers(tmp_path):
    """Tests the literature format (m, n, times on any lines) and a headered variant."""
    plain = tmp_path / "plain.txt"
    plain.write_text("2\n5\n3 3\n2\n2 2\n")
    headered = tmp_path / "headered.txt"
    headered.write_text("# Frangioni-style header\nmachines: 2\njobs = 5\n3\n3\n2\n2\n2\n")
    for path in (plain, headered):
        m, times = read_pcmax(path)
        assert m == 2 and times.tolist() == [3, 3, 2, 2, 2]


@pytest.mark.parametrize(
    "text, message",
    [
        ("2\n3\n1 2\n", "declares 3 jobs but lists 2"),
        ("2\n2\n1 x\n", ":3: processing time 'x' is not a whole number"),
        ("0\n1\n5\n", ":1: the number of machines must be at least 1"),
        ("machines 2\n1 2\n", "the header gives no number of jobs"),
        ("2\n1\n1e99\n", "is not a whole number"),
    ],
)
def test_reader_refuses_anything_else_with_one_line(tmp_path, text, message):
    """Tests that malformed instance files give one line naming the file (and line)."""
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(OptimizerError) as caught:
        read_pcmax(path)
    assert message in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_pcmax_command_prints_the_certificate_and_its_help_example_runs():
    """Tests `pcmax examples/pcmax_e3.txt --details` (the help's example): proven optimal at 136
    where LPT gives 153, with the bounds line."""
    from typer.testing import CliRunner

    from cli import app

    root = Path(__file__).resolve().parent.parent.parent
    result = CliRunner().invoke(app, ["pcmax", str(root / "examples" / "pcmax_e3.txt"), "--time-limit", "5", "--details"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "makespan: 136", "lower bound: 136", "status: OPTIMAL",
        "bounds: L0 136, best 136; LPT 153, best heuristic 136; 0 bin-packing probes",
    ]


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4000), st.integers(1, 800)), min_size=4, max_size=12), st.integers(2, 4))
def test_identical_replicas_go_through_the_exact_core_with_a_valid_certified_plan(rows, m):
    """Tests `solve` on few requests on identical replicas (the exact core's path): the validator
    accepts the plan, it is no worse than LPT, and an OPTIMAL status means the estimated makespan
    meets the proven lower bound."""
    from conftest import make_requests

    from optimizer import parse_replicas, plan_violations, solve

    requests = make_requests([p for p, _ in rows], [o for _, o in rows])
    cluster = parse_replicas(f"h100-tp4:{m}")
    result = solve(requests, cluster, solver="cp-sat", time_limit_s=5)
    assert plan_violations(result.plan, requests, cluster) == []
    assert result.objective <= solve(requests, cluster, solver="lpt").objective * (1 + 1e-9)
    assert result.lower_bound <= result.objective * (1 + 1e-9)
    if result.status == "OPTIMAL":
        assert result.objective <= result.lower_bound * (1 + 1e-6)
