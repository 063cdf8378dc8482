"""Tests of the command line: help, the main job, and how bad input is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli import app
from optimizer import load_trace, parse_replicas, read_plan, validate_plan

ROOT = Path(__file__).parent.parent
TRACES = ROOT / "traces"
DATA = Path(__file__).parent / "data"
runner = CliRunner()


def _commands(group, path: tuple[str, ...] = ()):
    yield path, group
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from _commands(command, path + (name,))


@pytest.mark.parametrize("path", [path for path, _ in _commands(typer.main.get_command(app))], ids=" ".join)
def test_every_command_has_help_ending_with_an_example(path):
    """Tests that each command and group has help text whose last line is an example."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = [line.strip(" │") for line in result.stdout.strip().splitlines() if line.strip(" │")]
    assert lines[-1].startswith("Example: python cli.py"), result.stdout


def test_solve_writes_a_valid_deterministic_plan(tmp_path):
    """Tests the main job on the bundled default trace: a valid plan, the same bytes on every run."""
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        result = runner.invoke(app, ["solve", str(TRACES / "sharegpt_batch_2k.csv"), "--out", str(out)])
        assert result.exit_code == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()
    assert "makespan / bound" in result.stdout and "2,000 rows, valid" in result.stdout
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests
    validate_plan(read_plan(first), requests, parse_replicas("h100-tp4:4,a100-tp4:4"))


@pytest.mark.parametrize("name", sorted(p.name for p in TRACES.glob("*.csv")))
def test_trace_stats_works_on_every_bundled_trace(name):
    """Tests that `trace stats` reads every bundled trace."""
    result = runner.invoke(app, ["trace", "stats", str(TRACES / name), "--json"])
    assert result.exit_code == 0, result.stderr
    assert '"num_requests"' in result.stdout


def test_trace_convert_then_solve(tmp_path):
    """Tests that a converted trace is a native trace the planner reads."""
    native = tmp_path / "code.parquet"
    assert runner.invoke(app, ["trace", "convert", str(TRACES / "AzureLLMInferenceTrace_code.csv"), "--out", str(native)]).exit_code == 0
    result = runner.invoke(app, ["solve", str(native), "--out", str(tmp_path / "plan.csv"), "--replicas", "h100-tp8:2", "-q"])
    assert result.exit_code == 0 and result.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", str(DATA / "missing.csv")], "missing.csv: no such file."),
        (["solve", str(DATA / "burstgpt.csv")], "ask for model 'ChatGPT', which no replica serves"),
        (["solve", str(DATA / "vidur.csv"), "--replicas", "v100-tp4:2"], "Unknown GPU 'v100'"),
        (["solve", str(DATA / "vidur.csv"), "--solver", "gurobi"], "Unknown solver 'gurobi'"),
        (["solve", str(DATA / "vidur.csv"), "--format", "mooncake"], "vidur.csv:1: timestamp: missing column for the mooncake format"),
        (["solve", str(DATA / "vidur.csv"), "--arrival-rate", "3"], "an arrival rate applies only to length-only tables"),
        (["trace", "stats", str(DATA / "splitwise.csv"), "--format", "bogus"], "unknown format 'bogus'"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(tmp_path, args, message):
    """Tests that bad input gives exit code 1, one error line naming the problem, no traceback, no file."""
    out = tmp_path / "plan.csv"
    result = runner.invoke(app, [*args, "--out", str(out)] if args[0] == "solve" else args)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_plan_validate_lists_what_is_wrong(tmp_path):
    """Tests that `plan validate` accepts a good plan and rejects a tampered one with exit code 1."""
    plan = tmp_path / "plan.csv"
    trace = str(TRACES / "sharegpt_batch_2k.csv")
    runner.invoke(app, ["solve", trace, "--out", str(plan), "-q"])
    assert runner.invoke(app, ["plan", "validate", str(plan), "--trace", trace]).exit_code == 0
    lines = plan.read_text().splitlines()
    plan.write_text("\n".join(lines[:-1]) + "\n")  # drop the last request
    result = runner.invoke(app, ["plan", "validate", str(plan), "--trace", trace])
    assert result.exit_code == 1
    assert "1 requests of the trace are not planned" in result.stderr
