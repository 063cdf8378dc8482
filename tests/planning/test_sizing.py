"""Tests of fleet sizing: the candidates file, the cost MIP, its check by simulation, and `fleet`."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from commands import fleet as fleet_command
from commands import sweep as sweep_command
from commands.common import OneLineErrors
from optimizer import load_cluster, load_trace, parse_replicas, read_plan, simulate, solve, validate_plan
from optimizer.common.errors import InputError, OptimizerError
from optimizer.planning.candidates import Candidate, fleet_cluster, load_candidates, write_fleet
from optimizer.planning.sizing import fastest_within_budget, size_fleet, window_cost
from optimizer.reporting.fleet_choice import check_fleet, choose_fleet

ROOT = Path(__file__).parent.parent.parent
TRACE = ROOT / "traces" / "sharegpt_batch_2k.csv"
EXAMPLE = ROOT / "examples" / "candidates.toml"
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(cls=OneLineErrors, add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(fleet_command.app)
    app.add_typer(sweep_command.app)
    return app


@pytest.fixture(scope="module")
def requests():
    """The first 200 requests of the bundled ShareGPT batch, served by Llama-3.1-8B."""
    return load_trace(TRACE, model="llama-3.1-8b").requests.iloc[:200].reset_index(drop=True)


def _candidate(kind: str, price: float, available: int, minimum: int = 0) -> Candidate:
    return Candidate(parse_replicas(kind).replicas[0], price, available, minimum)


@pytest.fixture(scope="module")
def two_kinds():
    """H100 and L40S at the example file's prices, up to 6 of each."""
    return [_candidate("llama-3.1-8b@h100-tp1", 4.176, 6), _candidate("llama-3.1-8b@l40s-tp1", 1.908, 6)]


@pytest.fixture(scope="module")
def every_fleet(requests, two_kinds):
    """Simulated makespan of every fleet of up to 6 + 6 replicas, each planned by LPT."""
    makespans = {}
    for counts in itertools.product(range(7), range(7)):
        if sum(counts):
            cluster = fleet_cluster(two_kinds, counts)
            plan = solve(requests, cluster, solver="lpt").plan
            makespans[counts] = float(simulate(requests, cluster, dispatch="plan", plan=plan).requests["finish_s"].max())
    return makespans


@pytest.mark.parametrize("deadline_s", [18.0, 25.0, 35.0])
def test_the_choice_is_the_cheapest_fleet_that_meets_the_deadline_in_simulation(requests, two_kinds, every_fleet, deadline_s):
    """Tests, against every fleet of up to 6 H100 and 6 L40S replicas planned and simulated, that
    the sized fleet (with its simulation check) meets the deadline and costs no more than the
    cheapest fleet that does."""
    meeting = {counts: window_cost(two_kinds, counts, deadline_s) for counts, m in every_fleet.items() if m <= deadline_s}
    cheapest = min(meeting.values())
    checked = check_fleet(requests, two_kinds, deadline_s, planner="lpt")
    assert checked.met and checked.simulated_makespan_s == every_fleet[tuple(int(n) for n in checked.counts)]
    assert checked.cost_usd == pytest.approx(cheapest, rel=1e-9)


def test_cost_is_between_its_lp_bound_and_the_cost_of_every_single_kind_fleet(requests, two_kinds):
    """Tests that the chosen fleet's cost is at least the LP relaxation's bound and at most the
    cost of the best single-kind fleet that meets the deadline, and that the side-by-side
    figures are the ones a user reads: GPU-hours and utilization of each kind rented."""
    choice = choose_fleet(requests, two_kinds, 25.0, planner="lpt")
    assert choice.chosen.met
    assert choice.lower_bound_usd <= choice.chosen.cost_usd * (1 + 1e-9)
    best = choice.best_single
    assert best is not None and choice.chosen.cost_usd <= choice.single[best].cost_usd * (1 + 1e-9)
    rented = choice.chosen.counts > 0
    assert np.all(choice.chosen.gpu_hours[rented] == pytest.approx(choice.chosen.counts[rented] * 25.0 / 3600))
    assert np.all((choice.chosen.utilization[rented] > 0.5) & (choice.chosen.utilization[rented] <= 1.0))


def test_until_done_billing_charges_work_and_minimums_are_rented(requests, two_kinds):
    """Tests that until-done billing costs at most what window billing costs for the same
    deadline, and that a candidate's minimum is always rented."""
    window = size_fleet(requests, two_kinds, 30.0, billing="window")
    until_done = size_fleet(requests, two_kinds, 30.0, billing="until-done")
    assert until_done.cost_usd <= window.cost_usd
    forced = [two_kinds[0], _candidate("llama-3.1-8b@l40s-tp1", 1.908, 6, minimum=2)]
    assert size_fleet(requests, forced, 30.0).counts[1] >= 2


def test_a_larger_budget_never_gives_a_slower_fleet(requests, two_kinds):
    """Tests that the fastest fleet within a budget fits it, and that more money buys a
    deadline at least as short."""
    small = fastest_within_budget(requests, two_kinds, 0.05)
    large = fastest_within_budget(requests, two_kinds, 0.2)
    assert small.cost_usd <= 0.05 and large.cost_usd <= 0.2
    assert large.deadline_s <= small.deadline_s


def test_a_deadline_no_fleet_meets_names_the_shortest_makespan_and_the_chain(requests, two_kinds):
    """Tests that an impossible deadline is one error saying how fast everything available goes
    and which request's chain forces it."""
    with pytest.raises(OptimizerError) as error:
        choose_fleet(requests, two_kinds, 2.0, planner="lpt")
    message = str(error.value)
    assert "shortest estimated makespan" in message and "chain bound alone" in message and "\n" not in message


def test_the_written_fleet_is_a_cluster_file_other_commands_read(tmp_path, two_kinds):
    """Tests that the fleet file loads with `load_cluster` as the same replicas."""
    path = tmp_path / "fleet.toml"
    write_fleet(path, two_kinds, [3, 2], ["test"])
    cluster = load_cluster(path)
    assert cluster.names == fleet_cluster(two_kinds, [3, 2]).names
    assert [r.kind for r in cluster.replicas] == [r.kind for r in fleet_cluster(two_kinds, [3, 2]).replicas]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[[candidates]]\nkind = "llama-3.1-8b@h1000-tp1"\nprice_per_gpu_hour = 1\navailable = 2\n', "h1000"),
        ('[[candidates]]\nkind = "llama-3.1-8b@h100-tp1"\nprice_per_gpu_hour = -1\navailable = 2\n', "price_per_gpu_hour must be at least 0"),
        ('[[candidates]]\nkind = "llama-3.1-8b@h100-tp1"\nprice_per_gpu_hour = 1\navailable = -2\n', "available must be at least 0"),
        ('[[candidates]]\nkind = "llama-3.1-8b@h100-tp1"\nprice_per_gpu_hour = 1\navailible = 2\n', "did you mean 'available'"),
        ('[[candidate]]\nkind = "x"\n', "did you mean 'candidates'"),
    ],
)
def test_bad_candidate_files_are_one_line_naming_the_candidate(tmp_path, text, expected):
    """Tests that unknown kinds, negative prices or availability and misspelt keys are one line
    naming the file (and the candidate)."""
    path = tmp_path / "candidates.toml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_candidates(path)
    assert expected in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_fleet_command_writes_a_fleet_and_its_plan(tmp_path):
    """Tests `fleet` end to end on the example candidates: it writes a cluster file and a plan
    that is valid on it, and prints the side-by-side table."""
    trace = tmp_path / "small.csv"
    trace.write_text("".join(TRACE.read_text().splitlines(keepends=True)[:201]))
    fleet, plan = tmp_path / "fleet.toml", tmp_path / "plan.csv"
    result = runner.invoke(_app(), ["fleet", str(trace), "--candidates", str(EXAMPLE), "--deadline", "30s", "--model", "llama-3.1-8b",
                                    "--planner", "lpt", "--out", str(fleet), "--plan", str(plan)])
    assert result.exit_code == 0, result.output
    assert "Best single kind" in result.stdout and "LP lower bound" in result.stdout
    cluster = load_cluster(fleet)
    validate_plan(read_plan(plan), load_trace(trace, model="llama-3.1-8b").requests, cluster)


def test_fleet_command_bad_input_writes_nothing(tmp_path):
    """Tests that an impossible deadline and a bad candidates file are one line, exit 1, no file."""
    fleet = tmp_path / "fleet.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[candidates]]\nkind = "llama-3.1-8b@h100-tp1"\nprice_per_gpu_hour = -3\navailable = 1\n')
    for args in (["--candidates", str(EXAMPLE), "--deadline", "1s"], ["--candidates", str(bad), "--deadline", "1h"]):
        result = runner.invoke(_app(), ["fleet", str(TRACE), *args, "--model", "llama-3.1-8b", "--planner", "lpt", "--out", str(fleet)])
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert not fleet.exists()
