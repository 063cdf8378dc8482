"""Tests of the arc-flow LP bound (`optimizer.planning.arc_flow`) and the minimum-slack packing
of `optimizer.planning.incumbent`: the bound is checked against brute force, the packings
against their input, and the exact core's certificate on a case only the LP proves."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.planning.arc_flow import knapsack_value, lp_phase, lp_probe
from optimizer.planning.exact import solve_exact
from optimizer.planning.incumbent import makespan, min_slack_pack, targeted
from optimizer.planning.makespan_bounds import lower_bound

tiny = st.integers(1, 4).flatmap(lambda m: st.tuples(st.just(m), st.lists(st.integers(1, 40), min_size=1, max_size=7)))


def brute_force(times: list[int], m: int) -> int:
    """The optimal makespan by trying every assignment."""
    return min(int(np.bincount(a, weights=times, minlength=m).max()) for a in itertools.product(range(m), repeat=len(times)))


@settings(max_examples=80, deadline=None)
@given(tiny)
def test_lp_bound_never_refutes_the_brute_force_optimum(instance):
    """Tests that the certified arc-flow LP never declares the optimal makespan (found by trying
    every assignment) impossible, so the bound it raises stays at or below the optimum."""
    m, times = instance
    p = np.array(times)
    optimum = brute_force(times, m)
    assert lp_probe(p, m, optimum, work_limit_s=1.0)[0] != "INFEASIBLE"
    raised, _ = lp_phase(p, m, lower_bound(p, m), optimum + 1, 5.0, [])
    assert raised <= optimum


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(1, 3), st.floats(0, 1)), min_size=1, max_size=4), st.integers(0, 30))
def test_knapsack_certificate_matches_brute_force(items, capacity):
    """Tests the knapsack that certifies the LP's duals: its value is the best over every choice
    of copies within the capacity."""
    sizes = np.array([s for s, _, _ in items])
    counts = np.array([c for _, c, _ in items])
    values = np.array([v for _, _, v in items])
    best = max(
        float(np.dot(k, values)) for k in itertools.product(*(range(c + 1) for c in counts)) if np.dot(k, sizes) <= capacity
    )
    assert abs(knapsack_value(sizes, counts, values, capacity) - best) < 1e-9


@settings(max_examples=60, deadline=None)
@given(tiny, st.integers(0, 30))
def test_minimum_slack_packing_is_a_schedule_and_targeting_never_worsens(instance, extra):
    """Tests that the minimum-slack packing aimed at any capacity, plain or perturbed, places every
    job on a machine, and that trying it from the bound up (with perturbed restarts) never returns
    a worse schedule than the one given, and returns the same one on a second call."""
    m, times = instance
    p = np.array(times)
    for rng in (None, np.random.default_rng(extra)):
        packed = min_slack_pack(p, m, int(p.max()) + extra, rng, 3.0)
        assert packed.shape == p.shape and packed.min() >= 0 and packed.max() < m
    start = np.arange(len(p)) % m
    better = targeted(p, m, lower_bound(p, m), start)
    assert makespan(p, better, m) <= makespan(p, start, m)
    assert np.array_equal(better, targeted(p, m, lower_bound(p, m), start))


def test_lp_proves_optimality_where_the_bin_packing_bound_stops_short():
    """Tests 37, 27, 46, 22, 37, 46 on two machines: the Dell'Amico-Martello bounds stop at 108
    (half the total, rounded up), the arc-flow LP refutes 108 and 109, and the exact core returns
    a schedule of makespan 110 with the OPTIMAL certificate 110 (the brute-force optimum)."""
    times = np.array([37, 27, 46, 22, 37, 46])
    assert lower_bound(times, 2) == 108
    assert lp_phase(times, 2, 108, 110, 5.0, [])[0] == 110
    found = solve_exact(times, 2, deterministic_limit_s=2.0)
    assert found.optimal and found.makespan == found.lower_bound == 110 == brute_force(times.tolist(), 2)
    assert np.bincount(found.assignment, weights=times, minlength=2).max() == 110
