"""Simulator speed against the code before issue 15's speed-up, side by side in one run.

    python benchmarks/simulator_speed.py                  # every section (about 7 minutes)
    python benchmarks/simulator_speed.py --only replay    # or: dispatch, large, peer
    python benchmarks/simulator_speed.py --base 16b90c4   # the "before" commit (default)

The "before" code is taken from git (`git archive BASE optimizer`) into a temporary folder,
and every case runs in a fresh process of its own, for the current code and for the before
code, one after the other. Each row gives the CPU seconds of the `simulate()` call (process
time, steadier than wall time on a shared machine), the peak RSS of the process, and whether
the two results are identical (sha256 of the per-request table, the replica counters and
the counts, floats at full precision).

Workloads (deterministic, built from the bundled traces):
- offline batch of N: N rows drawn with numpy's default_rng(2026) from
  traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv, all arriving at 0, ids r0..;
- plan replay: that batch planned by LPT (a fixed plan, not the solvers, whose times other
  work may change) on 4 H100-TP4 + 4 A100-TP4 (or 32 + 32) llama2-70b replicas, then
  `simulate --plan` (plan dispatch, Sarathi batching);
- dispatch: the same batch, Sarathi, each rule (round-robin, least-outstanding, least-work);
- peer comparison (Vidur's setting): traces/AzureLLMInferenceTrace_conv.csv on 4 H100-TP4
  replicas, round-robin dispatch, Sarathi with 2,048-token chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "16b90c4"  # the last commit before the speed-up
EIGHT = "h100-tp4:4,a100-tp4:4"
SIXTY_FOUR = "h100-tp4:32,a100-tp4:32"


# -- the worker: one simulation in this process, with the code found at `root` ------------

def offline_batch(load_trace, n: int):
    import numpy as np
    import pandas as pd

    base = load_trace(ROOT / "traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv").requests
    requests = base.iloc[np.random.default_rng(2026).integers(0, len(base), n)].reset_index(drop=True)
    requests["request_id"] = "r" + pd.Series(np.arange(n)).astype(str)
    requests["arrival_s"] = 0.0
    return requests


def worker(root: str, case: str, n: int, replicas: str, dispatch: str, plan_path: str) -> None:
    sys.path.insert(0, root)
    from optimizer import load_trace, parse_replicas, read_plan, simulate

    if case == "peer":
        requests = load_trace(ROOT / "traces" / "AzureLLMInferenceTrace_conv.csv").requests
        options = {"chunk_tokens": 2048}
    else:
        requests = offline_batch(load_trace, n)
        options = None
    cluster = parse_replicas(replicas)
    plan = read_plan(plan_path) if dispatch == "plan" else None
    started = time.process_time()
    result = simulate(requests, cluster, dispatch=dispatch, policy="sarathi", plan=plan, policy_options=options)
    cpu_s = time.process_time() - started
    text = "\n".join([result.requests.to_csv(index=False, float_format=repr), result.replicas.to_csv(index=False, float_format=repr),
                      repr((result.restarted_requests, result.redone_tokens, result.moved_requests))])
    print(json.dumps({
        "cpu_s": cpu_s, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "digest": hashlib.sha256(text.encode()).hexdigest(), "makespan_s": float(result.requests["finish_s"].max()),
        "iterations": int(result.replicas["iterations"].sum()), "requests": len(requests),
    }))


# -- the driver ----------------------------------------------------------------------------

def run(root: Path, case: str, n: int, replicas: str, dispatch: str, plan_path: Path | str = "") -> dict:
    command = [sys.executable, __file__, "--worker", str(root), case, str(n), replicas, dispatch, str(plan_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker failed: {' '.join(command)}\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def base_code(commit: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "optimizer"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def write_plan_for(n: int, replicas: str, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from optimizer import load_trace, parse_replicas, solve, write_plan

    path = folder / f"plan-{n}-{replicas.replace(':', '_').replace(',', '-')}.csv"
    if not path.exists():
        write_plan(solve(offline_batch(load_trace, n), parse_replicas(replicas), solver="lpt").plan, path)
    return path


def same(a: dict, b: dict) -> str:
    return "yes" if a["digest"] == b["digest"] else "NO"


def replay(base: Path, folder: Path) -> None:
    print("\n### `simulate --plan`: offline ShareGPT batch, LPT plan, Sarathi, 8 replicas (4 H100-TP4 + 4 A100-TP4)\n")
    print("| requests | iterations | before: CPU s | now: CPU s | before / now | before: us per request | now: us per request | now: peak RSS GB | identical |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in (10_000, 100_000):
        plan = write_plan_for(n, EIGHT, folder)
        before, now = run(base, "replay", n, EIGHT, "plan", plan), run(ROOT, "replay", n, EIGHT, "plan", plan)
        print(f"| {n:,} | {now['iterations']:,} | {before['cpu_s']:.2f} | {now['cpu_s']:.2f} | {before['cpu_s'] / now['cpu_s']:.1f}x | "
              f"{before['cpu_s'] / n * 1e6:.0f} | {now['cpu_s'] / n * 1e6:.1f} | {now['rss_gb']:.2f} | {same(before, now)} |", flush=True)


def large(folder: Path) -> None:
    print("\n### `simulate --plan`, 1M requests on 64 replicas (32 H100-TP4 + 32 A100-TP4), current code only\n")
    print("| requests | iterations | CPU s | us per request | peak RSS GB | simulated makespan s |")
    print("|---:|---:|---:|---:|---:|---:|")
    n = 1_000_000
    now = run(ROOT, "replay", n, SIXTY_FOUR, "plan", write_plan_for(n, SIXTY_FOUR, folder))
    print(f"| {n:,} | {now['iterations']:,} | {now['cpu_s']:.1f} | {now['cpu_s'] / n * 1e6:.1f} | {now['rss_gb']:.2f} | {now['makespan_s']:,.0f} |", flush=True)


def dispatch(base: Path) -> None:
    print("\n### Dispatch rules: offline ShareGPT batch, Sarathi, 8 replicas; CPU us per request (before: 10k only)\n")
    print("| dispatch | before, 10k | now, 10k | now, 100k | 100k / 10k | identical at 10k |")
    print("|---|---:|---:|---:|---:|---|")
    for rule in ("round-robin", "least-outstanding", "least-work"):
        before = run(base, "dispatch", 10_000, EIGHT, rule)
        small, big = run(ROOT, "dispatch", 10_000, EIGHT, rule), run(ROOT, "dispatch", 100_000, EIGHT, rule)
        per_small, per_big = small["cpu_s"] / 1e4 * 1e6, big["cpu_s"] / 1e5 * 1e6
        print(f"| {rule} | {before['cpu_s'] / 1e4 * 1e6:.0f} | {per_small:.1f} | {per_big:.1f} | {per_big / per_small:.2f} | {same(before, small)} |", flush=True)


def peer(base: Path) -> None:
    print("\n### Peer setting: Azure conv trace (19,366 requests), 4 H100-TP4, round-robin, Sarathi, 2,048-token chunks\n")
    print("| code | CPU s | peak RSS GB | identical |")
    print("|---|---:|---:|---|")
    before, now = run(base, "peer", 0, "h100-tp4:4", "round-robin"), run(ROOT, "peer", 0, "h100-tp4:4", "round-robin")
    print(f"| before | {before['cpu_s']:.2f} | {before['rss_gb']:.2f} | |")
    print(f"| now | {now['cpu_s']:.2f} | {now['rss_gb']:.2f} | {same(before, now)} |", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        root, case, n, replicas, rule, plan = (sys.argv[2:8] + [""] * 6)[:6]
        return worker(root, case, int(n), replicas, rule, plan)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["replay", "dispatch", "large", "peer"])
    parser.add_argument("--base", default=BASE, help="commit of the code to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="simulator-speed-") as tmp:
        folder = Path(tmp)
        base = base_code(args.base, folder)
        print(f"before: {args.base}; now: the working tree; CPU seconds of the simulate() call, each case in a fresh process")
        if args.only in (None, "replay"):
            replay(base, folder)
        if args.only in (None, "dispatch"):
            dispatch(base)
        if args.only in (None, "peer"):
            peer(base)
        if args.only in (None, "large"):
            large(folder)


if __name__ == "__main__":
    main()
