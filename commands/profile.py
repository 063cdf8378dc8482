"""`profile show`, `profile calibrate`, `profile fit`: the performance profiles behind every estimate."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

import optimizer
from optimizer.common.errors import OptimizerError
from optimizer.common.files import check_output
from optimizer.fleet.calibration import calibrate, calibration_lines, read_runs, write_profiles
from optimizer.fleet.gpus import find_gpu
from optimizer.fleet.measurements import builtin_profiles, fit_profiles, holdout_error, read_measurements
from optimizer.fleet.sources import profile_for
from commands.common import (
    EngineOpt,
    ProfilesOpt,
    SourceOpt,
    out,
    read_profiles,
    user_errors,
)

BUILTIN_MEASUREMENTS = resources.files("optimizer.fleet").joinpath("data", "splitwise_perf_model.csv")

app = typer.Typer(
    help="Show and fit the GPU performance profiles behind every time estimate.",
    epilog="Example: python cli.py profile show --gpu h100 --tp 4",
    no_args_is_help=True,
)


def _profile_table(profiles: dict, errors) -> Table:
    table = Table("model", "gpu", "tp", "prefill 512 ms", "prefill 4096 ms", "decode b1 ms", "decode b64 ms",
                  "prefill error %", "decode error %", "source")
    errors = errors.set_index(["model", "gpu", "tp"]) if errors is not None else None
    for key, p in sorted(profiles.items()):
        error = errors.loc[key] if errors is not None and key in errors.index else None
        prefill_error = error["prefill_mape_pct"] if error is not None else p.prefill_error_pct
        decode_error = error["decode_mape_pct"] if error is not None else p.decode_error_pct
        table.add_row(
            p.model, p.gpu, str(p.tp),
            f"{p.prefill_time_ms(512):.1f}", f"{p.prefill_time_ms(4096):.1f}",
            f"{p.decode_time_ms(1, 1024):.1f}", f"{p.decode_time_ms(64, 64 * 1024):.1f}",
            "-" if prefill_error != prefill_error else f"{prefill_error:.2f}",
            "-" if decode_error != decode_error else f"{decode_error:.2f}",
            p.source,
        )
    return table


def _holdout_or_none(measurements):
    """Held-out errors, or None when the measurements lack the points of the held-out split."""
    try:
        return holdout_error(measurements)
    except OptimizerError:
        return None


@app.command("show", epilog="Example: python cli.py profile show --replicas llama-3.1-8b@l40s-tp1,qwen3-32b@h200-tp2 --engine sglang")
def profile_show(
    model: Annotated[Optional[str], typer.Option("--model", help="Only this model (bundled measurements).")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="Only this GPU type (bundled measurements: a100, h100, h100-pcap).")] = None,
    tp: Annotated[Optional[int], typer.Option("--tp", help="Only this tensor-parallel degree (bundled measurements).")] = None,
    replicas: Annotated[Optional[str], typer.Option("--replicas", help="Show the profiles of this cluster's replica kinds instead (any source).")] = None,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    profiles: ProfilesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fitted coefficients as JSON.")] = False,
) -> None:
    """Print profiles (iteration times at reference points), their source and their fit error.

    Without --replicas: the bundled Splitwise measurements' profiles, with their held-out error.
    """
    with user_errors():
        if replicas is not None:
            cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
            user = read_profiles(profiles)
            chosen = {replica.kind: profile_for(replica, user) for replica in cluster.first_of_each_kind}
            errors = None
        else:
            gpu_name = None if gpu is None else find_gpu(gpu).name
            chosen = {key: p for key, p in builtin_profiles().items()
                      if (model is None or key[0] == model) and (gpu_name is None or key[1] == gpu_name) and (tp is None or key[2] == tp)}
            if not chosen:
                raise OptimizerError("No built-in profile matches; run `python cli.py profile show` to list them.")
            errors = holdout_error(read_measurements(BUILTIN_MEASUREMENTS))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for _, p in sorted(chosen.items())], indent=2))
        return
    out.print(_profile_table(chosen, errors))
    if replicas is None:
        out.print("Times from the fitted model; held-out error: fit on batch 1,2,8,32,64 x prompt 128,512,2048,8192, tested on the other measurements.")
    else:
        out.print("Fit error: the closed form against its source on points it was not fitted on (kernels), the calibration's held-out runs, or the roofline's band.")


@app.command("calibrate", epilog="Example: python cli.py profile calibrate optimizer/fleet/data/splitwise_perf_model.csv --replica llama-3.1-70b@h100-tp4 --rows llama2-70b@h100-80gb-tp4 --out mine.json")
def profile_calibrate(
    measurements: Annotated[Path, typer.Argument(help="Measured runs: `vllm bench latency` runs (batch_size,input_len,output_len,latency_s) or Splitwise perf_model.csv rows.", show_default=False)],
    replica: Annotated[str, typer.Option("--replica", help="The configuration measured, MODEL@GPU-tpN.", show_default=False)],
    engine: EngineOpt = "",
    out_path: Annotated[Path, typer.Option("--out", help="Profile file to write (use it with --profiles).")] = Path("profile.json"),
    hardware: Annotated[Optional[str], typer.Option("--rows", help="Splitwise files: use the rows of this model@hardware-tpN (default: the replica's).")] = None,
) -> None:
    """Correct the kernel-table profile of one configuration to your own stack with a few measured runs."""
    with user_errors():
        check_output(out_path)
        cluster = optimizer.resolve_cluster(replica, engine=engine, source="kernels")
        target = cluster.replicas[0]
        base = profile_for(target)
        table = _calibration_rows(measurements, target, hardware)
        lines = calibration_lines(table)
        calibrated = calibrate(base, table, lines)
        write_profiles([calibrated], out_path)
    out.print(f"Base     {target.kind}: {base.source}")
    out.print(f"Runs     {len(set(lines))} of {measurements} (lines {', '.join(map(str, sorted(set(lines))))})")
    out.print(f"Profile  {calibrated.source.split(', on ')[0]}")
    out.print(f"Error    held out: prefill {calibrated.prefill_error_pct:.1f}%, decode {calibrated.decode_error_pct:.1f}% MAPE on the other runs")
    out.print(f"Wrote    {out_path} (use it with --profiles {out_path})")


def _calibration_rows(path: Path, target, rows: str | None):
    """The measured runs of a calibration: benchmark runs, or one configuration's Splitwise rows."""
    with open(path, encoding="utf-8-sig", errors="replace") as file:
        header = file.readline()
    if "prompt_time" not in header:
        return read_runs(path)
    table = read_measurements(path)
    model, _, rest = (rows or f"{target.model}@{target.gpu}-tp{target.tp}").rpartition("@")
    hardware, _, tp = rest.rpartition("-tp")
    picked = table[(table["model"] == model) & (table["hardware"] == hardware) & (table["tensor_parallel"] == int(tp or 0))]
    if picked.empty:
        found = ", ".join(sorted({f"{m}@{h}-tp{t}" for m, h, t in table[["model", "hardware", "tensor_parallel"]].itertuples(index=False)}))
        raise OptimizerError(f"{path}: no rows of {model}@{hardware}-tp{tp}; pick one with --rows ({found}).")
    picked.attrs["path"] = str(path)
    return picked


@app.command("fit", epilog="Example: python cli.py profile fit optimizer/fleet/data/splitwise_perf_model.csv")
def profile_fit(
    measurements: Annotated[Path, typer.Argument(help="Measurements CSV with Splitwise's perf_model.csv columns.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the fitted coefficients as JSON.")] = False,
) -> None:
    """Fit profiles to your own GPU measurements and report their held-out error."""
    with user_errors():
        table = read_measurements(measurements)
        fitted = fit_profiles(table)
        errors = _holdout_or_none(table)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for _, p in sorted(fitted.items())], indent=2))
        return
    out.print(_profile_table(fitted, errors))
    if errors is None:
        out.print("No held-out error: the file lacks the points of the standard split.")
    out.print(f"Use them with --profiles {measurements} on solve and bounds.")
