"""Tests of parameter sweeps: the spec, identical results on any number of workers, failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from commands import fleet as fleet_command
from commands import sweep as sweep_command
from commands.common import OneLineErrors
from optimizer.common.errors import InputError, OptimizerError
from optimizer.reporting.sweep import check_address, read_spec, run_sweep, write_table

ROOT = Path(__file__).parent.parent.parent
TRACE = ROOT / "traces" / "sharegpt_batch_2k.csv"
runner = CliRunner()

SPEC = f"""
traces = ["{TRACE}", "huge.csv"]
fleets = ["llama-3.1-8b@h100-tp1:1,llama-3.1-8b@l40s-tp1:1"]
dispatch = ["least-outstanding", "lpt"]
batching = ["sarathi"]
seeds = [0, 1]
model = "llama-3.1-8b"
max_requests = 40

[[deviations]]
name = "exact"
[[deviations]]
name = "sigma 0.5"
length_error = 0.5
jitter_s = 0.5
"""


def _app() -> typer.Typer:
    app = typer.Typer(cls=OneLineErrors, add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(fleet_command.app)
    app.add_typer(sweep_command.app)
    return app


@pytest.fixture
def spec(tmp_path) -> Path:
    """A 16-cell spec whose second trace has a request no replica's KV cache holds."""
    (tmp_path / "huge.csv").write_text("request_id,arrival_s,prompt_tokens,output_tokens\nbig,0,900000,10\nsmall,0,100,10\n")
    path = tmp_path / "sweep.toml"
    path.write_text(SPEC)
    return path


def test_a_sweep_gives_the_same_bytes_serially_and_on_two_ray_workers(spec, tmp_path):
    """Tests that the table of a small sweep is byte for byte the same run serially in this
    process and on a 2-worker local Ray instance, and that the failing trace's cells are
    rows with their parameters and the error while every other cell has results."""
    pytest.importorskip("ray")
    cells = read_spec(spec)
    assert len(cells) == 16
    serial, parallel = tmp_path / "serial.csv", tmp_path / "ray.csv"
    table = run_sweep(cells, workers=0)
    write_table(table, serial)
    write_table(run_sweep(cells, workers=2), parallel)
    assert serial.read_bytes() == parallel.read_bytes()
    failed = table[table["trace"] == "huge.csv"]
    assert len(failed) == 8 and failed["error"].str.contains("KV cache").all()
    finished = table[table["trace"] != "huge.csv"]
    assert (finished["error"] == "").all() and (finished["makespan_over_bound"] >= 1.0).all()


@pytest.mark.parametrize(
    "text, expected",
    [
        ('trace = ["a.csv"]\n', "did you mean 'traces'"),
        (SPEC.replace('dispatch = ["least-outstanding", "lpt"]', 'dispatch = ["fastest"]'), "unknown policy 'fastest'"),
        (SPEC.replace('name = "exact"', 'nmae = "exact"'), "did you mean 'name'"),
        (SPEC.replace("huge.csv", "missing.csv"), "no such trace file 'missing.csv'"),
    ],
)
def test_bad_specs_are_one_line(spec, text, expected):
    """Tests that unknown keys (with a did-you-mean), unknown policies and missing traces are one
    line naming the spec."""
    spec.write_text(text)
    with pytest.raises(InputError) as error:
        read_spec(spec)
    assert expected in str(error.value) and str(spec) in str(error.value) and "\n" not in str(error.value)


def test_an_unreachable_ray_address_is_one_line_and_writes_nothing(spec, tmp_path):
    """Tests that a Ray address nothing answers on fails at once, exit 1, with no table written."""
    pytest.importorskip("ray")
    with pytest.raises(OptimizerError, match="cannot reach a Ray cluster"):
        check_address("ray://127.0.0.1:9")
    out = tmp_path / "results.csv"
    result = runner.invoke(_app(), ["sweep", str(spec), "--address", "ray://127.0.0.1:9", "--out", str(out)])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_without_ray_sweep_says_what_to_install(spec, tmp_path, monkeypatch):
    """Tests that, with Ray not importable, `sweep` on workers is one line naming the extra."""
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "results.csv"
    result = runner.invoke(_app(), ["sweep", str(spec), "--workers", "2", "--out", str(out)])
    assert result.exit_code == 1 and "fleet-optimizer[ray]" in result.stderr
    assert not out.exists()
