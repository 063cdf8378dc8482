"""Tests of `compare`: every policy on the same inputs, against the hindsight bound."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from optimizer import load_trace, parse_replicas
from optimizer.reporting.compare import COLUMNS, POLICY_NAMES, compare, to_markdown
from optimizer.serving.deviation import Deviations, Failure
from optimizer.serving.metrics import with_slo_targets
from optimizer.serving.predictor import LengthBelief, noisy_oracle, with_predictions

TRACES = Path(__file__).parent.parent.parent / "traces"
runner = CliRunner()
FLEET = parse_replicas("h100-tp4:2,a100-tp4:2")


@pytest.fixture(scope="module")
def batch():
    """300 ShareGPT requests of the bundled batch, with sigma-0.5 predictions."""
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests.head(300).reset_index(drop=True)
    predicted = noisy_oracle(requests["output_tokens"].to_numpy(dtype=float), 0.5, 0)
    return with_predictions(requests, predicted)


@pytest.fixture(scope="module")
def comparison(batch):
    return compare(batch, FLEET, batching=("sarathi", "vllm"), solver="lpt", belief=LengthBelief.lognormal(0.5))


def test_every_policy_and_batching_is_a_row_and_no_row_beats_the_hindsight_bound(comparison, batch):
    table = comparison.table
    assert list(table.columns) == list(COLUMNS)
    assert list(zip(table["policy"], table["batching"])) == [(p, b) for p in POLICY_NAMES for b in ("sarathi", "vllm")]
    # The bound is computed from the actual lengths, so it holds for every policy.
    assert (table["makespan_over_bound"] >= 1.0).all()
    assert (table["lower_bound_s"] == comparison.bounds.best_s).all()
    assert ((table["utilization"] > 0) & (table["utilization"] <= 1 + 1e-9)).all()
    assert (table["work_utilization"] <= table["utilization"] + 1e-9).all()  # best-batch work fits in busy time
    for simulation in comparison.simulations.values():
        assert len(simulation.requests) == len(batch) and simulation.requests["finish_s"].notna().all()


def test_planning_time_is_charged_only_to_rows_that_follow_a_plan(comparison):
    table = comparison.table.set_index(["policy", "batching"])
    for online in ("round-robin", "least-outstanding", "least-work"):
        assert table.loc[(online, "sarathi"), "planning_s"] == 0
    assert table.loc[("mip", "sarathi"), "planning_s"] == table.loc[("repair", "sarathi"), "planning_s"] > 0


def test_hindsight_bound_ignores_predictions(batch):
    """The same trace with different predictions has the same bound (actual lengths only)."""
    other = with_predictions(batch, batch["output_tokens"].to_numpy(dtype=float) * 3)
    first = compare(batch, FLEET, policies=["round-robin"], solver="lpt")
    second = compare(other, FLEET, policies=["round-robin"], solver="lpt")
    assert first.bounds == second.bounds
    assert first.table["makespan_s"].iloc[0] == second.table["makespan_s"].iloc[0]  # round-robin ignores lengths


def test_without_deviations_repair_replays_the_plan_it_repairs(batch):
    exact = batch.assign(predicted_output_tokens=pd.array([pd.NA] * len(batch), dtype="Int64"))
    table = compare(exact, FLEET, policies=["mip", "repair"], solver="lpt").table
    assert table["makespan_s"].iloc[0] == pytest.approx(table["makespan_s"].iloc[1], rel=1e-9)


def test_same_inputs_and_seed_give_the_same_table(batch):
    deviations = Deviations(arrival_jitter_s=0.5, seed=3)
    tables = [compare(batch, FLEET, policies=["least-work", "lpt", "repair"], solver="lpt", deviations=deviations).table for _ in range(2)]
    columns = [c for c in COLUMNS if c != "planning_s"]  # wall-clock time
    pd.testing.assert_frame_equal(tables[0][columns], tables[1][columns])


def test_slo_attainment_where_targets_exist(batch):
    loose = compare(with_slo_targets(batch, e2e_s=1e6), FLEET, policies=["round-robin"], solver="lpt").table
    tight = compare(with_slo_targets(batch, ttft_s=1e-6), FLEET, policies=["round-robin"], solver="lpt").table
    none = compare(batch, FLEET, policies=["round-robin"], solver="lpt").table
    assert loose["slo_attainment"].iloc[0] == 1.0 and tight["slo_attainment"].iloc[0] == 0.0
    assert math.isnan(none["slo_attainment"].iloc[0])
    assert "SLO met" not in to_markdown(none) and "SLO met" in to_markdown(tight)


def test_failure_restarts_requests_and_loses_none(batch):
    deviations = Deviations(failures=(Failure("h100-tp4-0", 5.0),))
    table = compare(batch, FLEET, policies=["round-robin", "repair"], solver="lpt", deviations=deviations).table
    assert (table["restarted_requests"] > 0).all()
    assert (table["makespan_over_bound"] >= 1.0).all()


def test_cli_compare_writes_csv_and_markdown(tmp_path):
    trace = tmp_path / "code.csv"
    trace.write_text("".join((TRACES / "AzureLLMInferenceTrace_code.csv").read_text().splitlines(keepends=True)[:121]))
    csv, md = tmp_path / "c.csv", tmp_path / "c.md"
    result = runner.invoke(app, ["compare", str(trace), "--replicas", "h100-tp4:1,a100-tp4:1", "--time-limit", "2",
                                 "--length-error", "0.3", "--slo-ttft", "2", "--out", str(csv), "--out", str(md)])
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(csv)
    assert list(table["policy"]) == list(POLICY_NAMES)
    assert {"policy", "makespan_s", "makespan_over_bound", "utilization", "slo_attainment"} <= set(table.columns)
    umask = os.umask(0)
    os.umask(umask)
    assert csv.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the user writes, not private
    text = md.read_text()
    assert text.startswith("| policy |") and text.count("\n") == 2 + len(POLICY_NAMES)
    assert "hindsight lower bound" in result.stdout and "repair" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policies", "round-robin,fastest"], "Unknown policy 'fastest'; choose from: round-robin"),
        (["--batching", "vllm,magic"], "Unknown batching policy 'magic'"),
        (["--out", "table.txt"], "--out table.txt: give a .csv or .md file."),
        (["--fail", "h100-tp4-9@3"], "h100-tp4-9"),
        (["--slo-ttft", "0"], "The TTFT target must be greater than 0 seconds, got 0."),
        (["--slo-ttft", "soon"], "The TTFT target 'soon' is not SECONDS or BASE+PER/token"),
        (["--context", "ignore"], "Unknown context policy 'ignore'; choose one of: error, drop, truncate."),
        (["--out", "table.csv", "--report", "missing/report"], "missing/report: folder missing does not exist."),
    ],
)
def test_cli_compare_bad_options_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", str(TRACES / "sharegpt_batch_2k.csv"), *args], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not list(tmp_path.iterdir())  # nothing written, not even the table


def test_on_timed_arrivals_the_table_leads_with_slo_attainment_and_latency(batch):
    """Tests that with arrivals over time the displayed columns start with SLO attainment (over all
    requests and over the achievable ones) and latency percentiles, makespan after them; with a
    0.1 s TTFT the longer prompts, whose prefill alone takes longer, are counted as unachievable."""
    timed = with_slo_targets(batch.head(60).assign(arrival_s=[i * 0.5 for i in range(60)]), ttft_s="0.1s", e2e_s="60s")
    result = compare(timed, FLEET, policies=["least-work", "repair"], solver="lpt")
    from optimizer.reporting.compare import display_rows

    headers, _ = display_rows(result.table)
    assert result.timed and headers[:5] == ["policy", "batching", "SLO met", "SLO met (achievable)", "TTFT p50 s"]
    assert headers.index("makespan s") > headers.index("E2E p99 s")
    assert 0 < result.unachievable < 60
    untimed, _ = display_rows(result.table, timed=False)
    assert untimed[2] == "makespan s"


def test_a_trace_with_shared_prefixes_adds_the_cache_router_and_keeps_work_utilization_below_busy(tmp_path):
    """Tests that on a trace declaring shared prefixes (GSM8K rollouts: an 8-shot preamble,
    16 samples per prompt) `compare` runs the cache-affinity router by default, and that work
    utilization, summed from each request's least work after reuse, stays at or below the
    busy-time utilization and 100% for every policy, the prefix-aware plan included."""
    trace = tmp_path / "rollouts.csv"
    with open(TRACES / "gsm8k_rollouts_16.csv", encoding="utf-8") as source:
        trace.write_text("".join(line for _, line in zip(range(1 + 16 * 12), source)), encoding="utf-8")
    table_path = tmp_path / "t.csv"
    result = runner.invoke(app, ["compare", str(trace), "--replicas", "h100-tp4:2", "--time-limit", "2", "--deterministic",
                                 "--out", str(table_path), "--quiet"])
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(table_path)
    assert list(table["policy"]) == [*POLICY_NAMES, "cache-affinity"]
    assert (table["work_utilization"] <= table["utilization"] + 1e-9).all()
    assert (table["utilization"] <= 1 + 1e-9).all()
