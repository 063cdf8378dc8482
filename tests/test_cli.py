"""Tests of the command line: help, the main job, and how bad input is reported."""

from __future__ import annotations

import json
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
        result = runner.invoke(app, ["solve", str(TRACES / "sharegpt_batch_2k.csv"), "--out", str(out), "--solver", "scip"])
        assert result.exit_code == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()
    assert "lower bound" in result.stdout and "gap" in result.stdout and "2,000 rows, valid" in result.stdout
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests
    validate_plan(read_plan(first), requests, parse_replicas("h100-tp4:4,a100-tp4:4"))


@pytest.mark.parametrize("name", sorted(p.name for p in TRACES.iterdir() if p.suffix in (".csv", ".jsonl")))
def test_trace_stats_works_on_every_bundled_trace(name):
    """Tests that `trace stats` reads every bundled trace."""
    result = runner.invoke(app, ["trace", "stats", str(TRACES / name), "--json"])
    assert result.exit_code == 0, result.stderr
    assert '"num_requests"' in result.stdout


def test_trace_convert_then_solve(tmp_path):
    """Tests that a converted trace is a native trace the planner reads."""
    native = tmp_path / "code.parquet"
    assert runner.invoke(app, ["trace", "convert", str(TRACES / "AzureLLMInferenceTrace_code.csv"), "--out", str(native)]).exit_code == 0
    result = runner.invoke(app, ["solve", str(native), "--out", str(tmp_path / "plan.csv"), "--replicas", "h100-tp8:2", "--solver", "scip", "-q"])
    assert result.exit_code == 0 and result.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", str(DATA / "missing.csv")], "missing.csv: no such file."),
        (["solve", str(DATA / "burstgpt.csv")], "ask for model 'ChatGPT', which no replica serves"),
        (["solve", str(DATA / "vidur.csv"), "--replicas", "v100-tp4:2"], "Unknown GPU 'v100'"),
        (["solve", str(DATA / "vidur.csv"), "--solver", "gurobi"], "Unknown solver 'gurobi'; choose one of: cp-sat"),
        (["solve", str(DATA / "vidur.csv"), "--time-limit", "0"], "Invalid value for '--time-limit': must be a finite number above 0"),
        (["solve", str(DATA / "vidur.csv"), "--formulation", "fancy"], "Unknown formulation 'fancy'"),
        (["solve", str(DATA / "vidur.csv"), "--format", "mooncake"], "vidur.csv:1: timestamp: missing column for the mooncake format"),
        (["solve", str(DATA / "vidur.csv"), "--arrival-rate", "3"], "an arrival rate applies only to length-only tables"),
        (["trace", "stats", str(DATA / "splitwise.csv"), "--format", "bogus"], "unknown format 'bogus'"),
        (["solve", str(DATA / "vidur.csv"), "--replicas", "llama-3.2-8b@h100-tp1"], "Unknown model 'llama-3.2-8b' in 'llama-3.2-8b@h100-tp1'; did you mean 'llama-3.1-8b'?"),
        (["solve", str(DATA / "vidur.csv"), "--replicas", "llama-3.1-8b@h100-tp1", "--engine", "vllm==9.9"], "No kernel tables for vllm==9.9 on h100; versions: 0.24.0, 0.27.0"),
        (["solve", str(DATA / "vidur.csv"), "--replicas", "llama-3.1-8b@a10g-tp1", "--source", "kernels"], "GPU 'a10g' has no kernel tables; GPUs with them: a100"),
        (["solve", str(DATA / "vidur.csv"), "--replicas", "qwen3-32b@l40s-tp1"], "the smallest tp that fits is 2"),
        (["solve", str(DATA / "vidur.csv"), "--profiles", str(DATA / "vidur.csv")], "vidur.csv:1: model: column is missing"),
        (["profile", "calibrate", str(DATA / "vidur.csv"), "--replica", "llama-3.1-8b@h100-tp1"], "vidur.csv:1: batch_size: column is missing"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(tmp_path, args, message):
    """Tests that bad input gives exit code 1, one error line naming the problem, no traceback, no file."""
    out = tmp_path / "plan.csv"
    result = runner.invoke(app, [*args, "--out", str(out)] if args[0] in ("solve", "profile") else args)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_plan_validate_lists_what_is_wrong(tmp_path):
    """Tests that `plan validate` accepts a good plan and rejects a tampered one with exit code 1."""
    plan = tmp_path / "plan.csv"
    trace = str(TRACES / "sharegpt_batch_2k.csv")
    runner.invoke(app, ["solve", trace, "--out", str(plan), "--solver", "lpt", "-q"])
    assert runner.invoke(app, ["plan", "validate", str(plan), "--trace", trace]).exit_code == 0
    lines = plan.read_text().splitlines()
    plan.write_text("\n".join(lines[:-1]) + "\n")  # drop the last request
    result = runner.invoke(app, ["plan", "validate", str(plan), "--trace", trace])
    assert result.exit_code == 1
    assert "1 requests of the trace are not planned" in result.stderr


def test_bounds_prints_each_bound_and_which_binds():
    """Tests `bounds` on a real trace: the three bounds, the binding one, as text and JSON."""
    args = ["bounds", str(TRACES / "AzureLLMInferenceTrace_code.csv"), "--replicas", "h100-tp4:1,a100-tp4:1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "binds" in result.stdout and "pcmax" in result.stdout
    as_json = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert as_json["lower_bound_s"] == max(as_json["work_s"], as_json["chain_s"], as_json["pcmax_s"])
    # One hour of arrivals: no plan can finish before the last request arrives.
    assert as_json["lower_bound_s"] > 3435


def test_profile_show_reports_the_held_out_error():
    """Tests `profile show` for one configuration: its reference times and held-out errors."""
    result = runner.invoke(app, ["profile", "show", "--gpu", "h100", "--tp", "4", "--model", "llama2-70b"])
    assert result.exit_code == 0, result.stderr
    assert "llama2-70b" in result.stdout and "4.72" in result.stdout and "1.09" in result.stdout


def test_profile_fit_uses_user_measurements_and_solve_accepts_them(tmp_path):
    """Tests `profile fit` on a measurements file, and `solve --profiles` with the same file."""
    source = ROOT / "optimizer" / "fleet" / "data" / "splitwise_perf_model.csv"
    lines = source.read_text().splitlines()
    mine = tmp_path / "mine.csv"
    mine.write_text("\n".join([lines[0]] + [line for line in lines[1:] if ",h100-80gb," in line and line.endswith(",4")]) + "\n")
    result = runner.invoke(app, ["profile", "fit", str(mine)])
    assert result.exit_code == 0, result.stderr
    assert "h100-80gb" in result.stdout and "a100" not in result.stdout
    plan = tmp_path / "plan.csv"
    solved = runner.invoke(app, ["solve", str(DATA / "vidur.csv"), "--replicas", "h100-tp4:2", "--profiles", str(mine), "--solver", "lpt", "--out", str(plan)])
    assert solved.exit_code == 0, solved.stderr


def test_bad_measurements_are_one_line(tmp_path):
    """Tests that a bad measurements file gives one error line naming file, line and field."""
    bad = tmp_path / "bad.csv"
    bad.write_text("model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,token_time,e2e_time,tensor_parallel\n"
                   "llama2-70b,h100-80gb,512,1,128,1,1,-3,30,100,4\n")
    result = runner.invoke(app, ["profile", "fit", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "bad.csv:2: prompt_time:" in result.stderr


def test_every_command_is_documented_in_the_readme():
    """Tests that the README's command table names every command of the CLI."""
    readme = (ROOT / "README.md").read_text()
    for path, command in _commands(typer.main.get_command(app)):
        if path and not hasattr(command, "commands"):
            assert f"`{' '.join(path)}" in readme, " ".join(path)


def test_solve_explains_a_last_planned_end_far_from_the_estimated_makespan(tmp_path):
    """Tests that when the plan's timeline ends well after the estimated makespan (300 short
    requests capped at 512 tokens on 8 replicas: 40.6 s against 32.2 s), `solve` says why
    in the output instead of leaving two unexplained figures."""
    result = runner.invoke(app, ["solve", str(TRACES / "batch" / "gsm8k.jsonl"), "--time-limit", "2", "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.stderr
    assert "last planned end 40.6 s" in result.stdout
    assert "the estimated makespan is each replica's work at its best batch B*" in result.stdout


def test_solvers_lists_backends_and_heuristics():
    """Tests that `solvers` lists the default backend and the heuristics."""
    result = runner.invoke(app, ["solvers"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names[0] == "cp-sat" and {"scip", "lpt", "least-loaded", "round-robin"} <= set(names)


def test_pcmax_prints_makespan_bound_and_status(tmp_path):
    """Tests the P||Cmax mode on a textbook instance (optimum 6, LPT 7) and a malformed file."""
    instance = tmp_path / "i.txt"
    instance.write_text("2\n5\n3 3\n2 2 2\n")
    result = runner.invoke(app, ["pcmax", str(instance), "--time-limit", "2"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["makespan: 6", "lower bound: 6", "status: OPTIMAL"]
    instance.write_text("2\n5\n3 3 2\n")
    result = runner.invoke(app, ["pcmax", str(instance)])
    assert result.exit_code == 1 and "declares 5 jobs but lists 3 processing times" in result.stderr


def test_simulate_follows_a_plan_and_writes_requests_and_summary(tmp_path):
    """Tests `simulate --plan`: the per-request CSV has the documented columns and one row per
    request, and the JSON summary has the makespan and utilization."""
    trace = str(DATA / "vidur.csv")
    plan, rows, figures = tmp_path / "plan.csv", tmp_path / "requests.csv", tmp_path / "summary.json"
    assert runner.invoke(app, ["solve", trace, "--solver", "lpt", "--out", str(plan), "-q"]).exit_code == 0
    result = runner.invoke(app, ["simulate", trace, "--plan", str(plan), "--out", str(rows), "--summary", str(figures)])
    assert result.exit_code == 0, result.stderr
    lines = rows.read_text().splitlines()
    assert lines[0] == "request_id,replica,arrival_s,start_s,first_token_s,finish_s,preemptions,restarts" and len(lines) == 5
    data = json.loads(figures.read_text())
    assert data["dispatch"] == "plan" and 0 < data["utilization"] <= 1 and data["makespan_s"] > 0


def test_simulate_rejects_a_plan_for_another_trace(tmp_path):
    """Tests that following a plan made for another trace is one error line naming the plan file,
    its line and the first unknown request."""
    plan = tmp_path / "plan.csv"
    runner.invoke(app, ["solve", str(TRACES / "sharegpt_batch_2k.csv"), "--solver", "lpt", "--out", str(plan), "-q"])
    result = runner.invoke(app, ["simulate", str(DATA / "azure_2023.csv"), "--plan", str(plan)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"{plan}:2: request_id: request" in result.stderr and "is not in the trace" in result.stderr


def test_simulate_repairs_a_plan_under_length_error_and_a_failure(tmp_path):
    """Tests `solve` and `simulate --dispatch repair` with `--length-error` and `--fail`: the plan
    is made from the same noisy predictions the repairer sees, the prediction error, moves and
    restarts are reported, every request finishes once, none on the failed replica after it
    failed; the same seed gives the same bytes."""
    trace = str(TRACES / "sharegpt_batch_2k.csv")
    plan = tmp_path / "plan.csv"
    common = ["--length-error", "0.5", "--seed", "1"]
    assert runner.invoke(app, ["solve", trace, "--solver", "lpt", *common, "--out", str(plan), "-q"]).exit_code == 0
    outputs = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in outputs:
        result = runner.invoke(app, ["simulate", trace, "--dispatch", "repair", "--plan", str(plan), *common,
                                     "--fail", "a100-tp4-3@60", "--out", str(path)])
        assert result.exit_code == 0, result.stderr
    assert "predicted lengths: MAE" in result.stdout and "restarted" in result.stdout
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    import pandas as pd

    table = pd.read_csv(outputs[0])
    assert len(table) == 2000 and table["request_id"].is_unique and table["finish_s"].notna().all()
    assert (table.loc[table["replica"] == "a100-tp4-3", "finish_s"] <= 61).all() and (table["restarts"] > 0).any()


def test_policy_repair_is_short_for_dispatch_repair_and_bad_deviations_are_one_line():
    """Tests `--policy repair` and the one-line errors of malformed deviations."""
    trace = str(DATA / "vidur.csv")
    result = runner.invoke(app, ["simulate", trace, "--policy", "repair", "--time-limit", "1"])
    assert result.exit_code == 0, result.stderr
    assert "sarathi batching, repair dispatch" in result.stdout
    for args, message in ((["--fail", "h100-tp4-9@3"], "No replica named 'h100-tp4-9'"),
                          (["--slow", "h100-tp4-0@3"], "is not REPLICA@SECONDS:FACTOR"),
                          (["--dispatch", "round-robin", "--dispatch-option", "slack_s=2"], "has no options"),
                          (["--length-error", "0.5", "--predictor", trace], "either --length-error or --predictor")):
        result = runner.invoke(app, ["simulate", trace, *args])
        assert result.exit_code == 1 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_predict_reports_held_out_error_and_writes_predictions(tmp_path):
    """Tests `predict`: the error on the held-out part, and a trace whose predictions plans use."""
    out = tmp_path / "predicted.csv"
    result = runner.invoke(app, ["predict", str(TRACES / "sharegpt_batch_2k.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "Error on 400 held-out requests: MAE" in result.stdout
    predicted = load_trace(out).requests
    assert len(predicted) == 2000 and predicted["predicted_output_tokens"].notna().all()
    assert predicted["output_tokens"].equals(load_trace(TRACES / "sharegpt_batch_2k.csv").requests["output_tokens"])


def test_models_and_gpus_list_the_catalogs():
    """Tests that `models` lists catalog models with their shapes and `gpus` the GPU types with
    which engines have kernel tables."""
    models = runner.invoke(app, ["models"])
    assert models.exit_code == 0
    assert "llama-3.1-8b" in models.stdout and "131,072" in models.stdout and "MoE 2/8" in models.stdout
    gpus = runner.invoke(app, ["gpus"])
    assert gpus.exit_code == 0
    assert "l40s" in gpus.stdout and "0.24.0" in gpus.stdout and "roofline" in gpus.stdout


def test_calibrate_writes_a_profile_that_solve_uses(tmp_path):
    """Tests `profile calibrate` on Splitwise rows: it writes a profile file, reports the held-out
    error, and `solve --profiles` then says the kind is calibrated."""
    profile = tmp_path / "mine.json"
    measured = ROOT / "optimizer" / "fleet" / "data" / "splitwise_perf_model.csv"
    result = runner.invoke(app, ["profile", "calibrate", str(measured), "--replica", "llama-3.1-70b@h100-tp4",
                                 "--rows", "llama2-70b@h100-80gb-tp4", "--out", str(profile)])
    assert result.exit_code == 0, result.stderr
    assert "Runs     8 of" in result.stdout and "held out: prefill" in result.stdout
    solved = runner.invoke(app, ["solve", str(DATA / "vidur.csv"), "--replicas", "llama-3.1-70b@h100-tp4:2", "--profiles", str(profile),
                                 "--solver", "lpt", "--out", str(tmp_path / "plan.csv")])
    assert solved.exit_code == 0, solved.stderr
    assert "llama-3.1-70b@h100-80gb-tp4: calibrated (8 runs" in solved.stdout


def test_every_help_example_reads_files_that_exist():
    """Tests that each command's help example runs as written on a fresh clone: every file it
    reads is in the repository, or is written by another command's example (solve's plan.csv,
    simulate's requests.csv)."""
    import shlex

    examples = []
    for path, command in _commands(typer.main.get_command(app)):
        if command.epilog and "Example: " in command.epilog:
            examples.append(shlex.split(command.epilog.split("Example: ", 1)[1]))
    written = {words[i + 1] for words in examples for i, word in enumerate(words[:-1]) if word == "--out"}
    reads = ("--trace", "--simulation", "--plan", "--candidates", "--requests", "--predictor", "--history", "--profiles")
    missing = []
    for words in examples:
        args = words[2:]  # after "python cli.py"
        names = [a for i, a in enumerate(args) if i and not a.startswith("-") and not args[i - 1].startswith("-")]
        names += [args[i + 1] for i, a in enumerate(args[:-1]) if a in reads]
        names += [a for a in args if a.endswith((".toml", ".json")) and a not in written and "@" not in a]
        for name in names:
            if "." in name and not (ROOT / name).exists() and name not in written:
                missing.append(f"{' '.join(words)}: {name}")
    assert not missing, "\n".join(missing)
