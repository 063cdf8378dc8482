"""The performance model against its sources: closed-form fit, calibration, roofline, build time.

    python benchmarks/performance_model.py [--only fit|calibration|roofline|build]

- fit: the closed form (`optimizer.fleet.profile`) fitted to NVIDIA's kernel tables
  (aiconfigurator-core) for a matrix of configurations, tested on held-out grid points;
  also one mixed step (a 512-token chunk with 32 decodes) against the tables' own mixed call.
- calibration: the kernel-table Llama-3.1-70B profile calibrated on at most 8 Splitwise runs
  per configuration, tested on every other point, next to the repeat spread of the
  measurements themselves.
- roofline: efficiency factors fitted on the GPUs with kernel tables, and the error per GPU
  when its own tables are left out of the fit.
- build: CPU seconds to build a kernel profile cold (empty cache) and warm (cached), each in
  a fresh process.

Prints Markdown tables. Runs offline; about two minutes of CPU on a 2-core machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.fleet import kernels  # noqa: E402
from optimizer.fleet.calibration import calibrate, calibration_lines  # noqa: E402
from optimizer.fleet.cluster import parse_replicas  # noqa: E402
from optimizer.fleet.fit import mape_pct  # noqa: E402
from optimizer.fleet.gpus import GPUS  # noqa: E402
from optimizer.fleet.measurements import _rows_of, _whole_batches, read_measurements  # noqa: E402
from optimizer.fleet.roofline import roofline_profile  # noqa: E402

#: (model, GPU, TP, engine): 4+ GPU types, 8B- to 70B-class, TP 1-8, vLLM and SGLang, two MoE.
MATRIX = (
    ("llama-3.1-8b", "h100", 1, "vllm"),
    ("llama-3.1-8b", "l40s", 1, "vllm"),
    ("llama-3.1-8b", "a100", 1, "vllm"),
    ("llama-3.1-8b", "h200", 1, "sglang"),
    ("qwen3-8b", "b200", 1, "vllm"),
    ("qwen3-32b", "h200", 2, "vllm"),
    ("qwen3-32b", "h100", 2, "sglang"),
    ("qwen3-32b", "rtx-pro-6000", 1, "vllm"),
    ("llama-3.1-70b", "h100", 4, "vllm"),
    ("llama-3.1-70b", "h100", 8, "vllm"),
    ("llama-3.1-70b", "a100", 4, "vllm"),
    ("llama-3.1-70b", "b200", 2, "sglang"),
    ("llama-3.1-70b", "l40s", 4, "vllm"),
    ("mixtral-8x7b", "h100", 2, "vllm"),
    ("qwen3-30b-a3b", "h100", 1, "vllm"),
)
ROOFLINE_SET = (("llama-3.1-8b", 1), ("qwen3-32b", 2), ("llama-3.1-70b", 4))


def _setup(model: str, gpu: str, tp: int, engine: str = ""):
    replica = parse_replicas(f"{model}@{gpu}-tp{tp}", engine=engine, source="kernels").replicas[0]
    g = GPUS[replica.gpu]
    name, version = kernels.resolve_engine(engine, g)
    handle = kernels.compile_engine(replica.shape, g, tp, name, version)
    profile = kernels.kernel_profile(replica.shape, g, tp, engine, "auto", replica.kv_capacity_tokens)
    return replica, handle, profile, version


def fit_table() -> None:
    print("### Closed form vs the kernel tables (held-out grid points)\n")
    print("| model | GPU | TP | engine | prefill MAPE % | prefill worst % | decode MAPE % | decode worst % | mixed step: tables ms | form ms |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for model, gpu, tp, engine in MATRIX:
        try:
            replica, handle, profile, version = _setup(model, gpu, tp, engine)
        except Exception as exc:  # a configuration the tables cannot compose: say so in the table
            print(f"| {model} | {gpu} | {tp} | {engine} | n/a: {str(exc)[:90]} |||||||")
            continue
        e = kernels.held_out_error(handle, profile, replica.kv_capacity_tokens)
        # One 512-token prompt prefilled in one chunk while 32 sequences decode at context ~1025.
        tables = handle.mixed_step_latency(512, 32, 512, 1024)
        form = profile.iteration_ms(512, 512**2, 1, 32, 32 * 1025)
        print(f"| {model} | {gpu} | {tp} | {engine} {version} | {e['prefill_mape_pct']:.2f} | {e['prefill_worst_pct']:.1f} | "
              f"{e['decode_mape_pct']:.2f} | {e['decode_worst_pct']:.1f} | {tables:.2f} | {form:.2f} |")
    print()


def calibration_table() -> None:
    path = ROOT / "optimizer" / "fleet" / "data" / "splitwise_perf_model.csv"
    measurements = read_measurements(path)
    print("### Calibration of the kernel-table Llama-3.1-70B on Splitwise's llama2-70b runs\n")
    print("At most 8 runs per configuration (`calibration.DESIGN`), tested on every other point. The repeat")
    print("spread is |repeat / median of its repeats - 1| over points measured more than once (a prefill")
    print("repeats whenever a (prompt, batch) was run for several output lengths).\n")
    print("| GPU | TP | runs | prefill MAPE % | decode MAPE % | prefill repeats p50 / p90 / max % | decode repeats p50 / p90 / max % | correction |")
    print("|---|---:|---:|---:|---:|---|---|---|")
    for hardware, tp in itertools.product(("a100-80gb", "h100-80gb", "h100-80gb-pcap"), (2, 4, 8)):
        rows = _rows_of(measurements, "llama2-70b", hardware, tp)
        rows.attrs["path"] = str(path)
        replica = parse_replicas(f"llama-3.1-70b@{hardware}-tp{tp}", source="kernels").replicas[0]
        base = kernels.kernel_profile(replica.shape, GPUS[replica.gpu], tp, "", "auto", replica.kv_capacity_tokens)
        lines = calibration_lines(rows)
        calibrated = calibrate(base, rows, lines)
        spread = _repeat_spread(_whole_batches(rows))
        print(f"| {hardware} | {tp} | {len(set(lines))} | {calibrated.prefill_error_pct:.1f} | {calibrated.decode_error_pct:.1f} | "
              f"{spread['prompt_time']} | {spread['token_time']} | {calibrated.source.split(': ', 1)[1].split(', on ')[0]} |")
    print()


def _repeat_spread(rows) -> dict[str, str]:
    found = {}
    for column in ("prompt_time", "token_time"):
        # A prefill does not depend on how many tokens the run then generates.
        keys = ["prompt_size", "batch_size"] if column == "prompt_time" else ["prompt_size", "batch_size", "token_size"]
        data = rows if column == "prompt_time" else rows[rows["token_size"] <= 256]
        median = data.groupby(keys)[column].transform("median")
        count = data.groupby(keys)[column].transform("size")
        deviation = (np.abs(data[column] / median - 1) * 100)[count > 1]
        found[column] = " / ".join(f"{v:.1f}" for v in np.percentile(deviation, [50, 90, 100])) if len(deviation) else "-"
    return found


def roofline_table() -> None:
    print("### Roofline fallback against the kernel tables\n")
    cases = []
    for gpu in ("a100", "h100", "h200", "b200", "l40s", "rtx-pro-6000"):
        for model, tp in ROOFLINE_SET:
            try:
                replica, handle, profile, _ = _setup(model, gpu, tp)
            except Exception:
                continue
            pre = kernels._prefill_points(handle, training=False)
            dec = kernels._decode_points(handle, replica.kv_capacity_tokens, training=False)
            cases.append((GPUS[replica.gpu], replica.shape, tp, pre, dec))
    grid = list(itertools.product(np.arange(0.30, 0.96, 0.05), np.arange(0.40, 0.96, 0.05), (0.0, 0.5, 1.0, 2.0, 4.0)))

    def errors(case, factors):
        gpu, shape, tp, (tokens, squares, prompts, y), (batch, context, z) = case
        p = roofline_profile(shape, gpu, tp, 0, *factors)
        return mape_pct(p._prefill_ms(tokens, squares, prompts), y), mape_pct(p._decode_ms(batch, context), z)

    def best(subset):
        return min(grid, key=lambda f: sum(sum(errors(c, f)) for c in subset))

    factors = best(cases)
    print(f"Fitted on all: compute efficiency {factors[0]:.2f}, bandwidth efficiency {factors[1]:.2f}, overhead {factors[2]:.1f} ms.\n")
    print("| GPU | configurations | prefill MAPE % (left out) | decode MAPE % (left out) |")
    print("|---|---:|---:|---:|")
    worst = [0.0, 0.0]
    for gpu in dict.fromkeys(c[0].name for c in cases):
        mine = [c for c in cases if c[0].name == gpu]
        others = best([c for c in cases if c[0].name != gpu])
        pre, dec = (float(np.mean(v)) for v in zip(*(errors(c, others) for c in mine)))
        worst = [max(worst[0], pre), max(worst[1], dec)]
        print(f"| {GPUS[gpu].aliases[0]} | {len(mine)} | {pre:.1f} | {dec:.1f} | ")
    print(f"\nError band (worst GPU, left out): prefill {worst[0]:.0f}%, decode {worst[1]:.0f}%.\n")


def build_table() -> None:
    print("### Building a kernel profile (CPU seconds, fresh process each)\n")
    code = ("import time; t = time.process_time(); from optimizer import parse_replicas, estimate; import numpy as np; "
            "from optimizer.fleet.sources import profile_for; c = parse_replicas('qwen3-32b@h200-tp2'); profile_for(c.replicas[0]); "
            "print(time.process_time() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FLEET_OPTIMIZER_CACHE": cache}
        cold = float(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        warm = [float(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
                for _ in range(3)]
    measured = ("import time; t = time.process_time(); from optimizer import parse_replicas; "
                "from optimizer.fleet.sources import profile_for; c = parse_replicas('h100-tp4'); profile_for(c.replicas[0]); "
                "print(time.process_time() - t)")
    base = [float(subprocess.run([sys.executable, "-c", measured], cwd=ROOT, capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    print("| qwen3-32b@h200-tp2 | CPU s |\n|---|---:|")
    print(f"| cold (empty cache): import, compile, sample, fit | {cold:.2f} |")
    print(f"| warm (cached), median of 3 | {sorted(warm)[1]:.2f} |")
    print(f"| for comparison: llama2-70b@h100-tp4 from the bundled measurements (as the first version), median of 3 | {sorted(base)[1]:.2f} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("fit", "calibration", "roofline", "build"))
    args = parser.parse_args()
    started = time.process_time()
    for name, table in (("fit", fit_table), ("calibration", calibration_table), ("roofline", roofline_table), ("build", build_table)):
        if args.only in (None, name):
            table()
    print(f"({time.process_time() - started:.0f} CPU s)")


if __name__ == "__main__":
    main()
