"""Benchmark of the simulator: fidelity against the planner's estimates, and speed.

    python benchmarks/simulator.py                # both sections
    python benchmarks/simulator.py --only speed   # or: fidelity

Fidelity: each bundled trace is planned (SCIP, 30 s) on 4 H100-TP4 + 4 A100-TP4 llama2-70b
replicas; the plan is then followed in the simulator under each batching policy, and the
simulated makespan is set beside the planner's estimate. Speed: the Azure conv trace on 8
replicas, and resamples of it at 10k, 100k and 1M requests (arrival gaps resampled too, so
the load stays the same), least-outstanding dispatch, Sarathi batching, one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_trace, parse_replicas, simulate, solve, summary  # noqa: E402

CLUSTER = "h100-tp4:4,a100-tp4:4"
TRACES = ["sharegpt_batch_2k.csv", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "AzureLLMInferenceTrace_conv.csv", "AzureLLMInferenceTrace_code.csv"]


def fidelity() -> None:
    print("\n### Planner estimate against simulation (plan followed, 4 H100-TP4 + 4 A100-TP4)\n")
    print("| trace | requests | estimated makespan s | policy | simulated makespan s | simulated / estimated | utilization |")
    print("|---|---:|---:|---|---:|---:|---:|")
    cluster = parse_replicas(CLUSTER)
    for name in TRACES:
        requests = load_trace(ROOT / "traces" / name).requests
        planned = solve(requests, cluster, solver="scip", time_limit_s=30)
        for policy in ("sarathi", "orca", "vllm"):
            figures = summary(simulate(requests, cluster, dispatch="plan", plan=planned.plan, policy=policy), requests)
            print(f"| {name} | {len(requests):,} | {planned.objective:,.1f} | {policy} | {figures['makespan_s']:,.1f} | "
                  f"{figures['makespan_s'] / planned.objective:.4f} | {figures['utilization']:.3f} |", flush=True)


def resample(requests: pd.DataFrame, n: int, seed: int = 2026) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(requests), n)
    gaps = np.diff(requests["arrival_s"].to_numpy())
    out = requests.iloc[rows].reset_index(drop=True)
    out["arrival_s"] = np.concatenate([[0.0], np.cumsum(rng.choice(gaps, n - 1))])
    out["request_id"] = "r" + pd.Series(np.arange(n)).astype(str)
    return out


def speed() -> None:
    print("\n### Speed: Sarathi batching, least-outstanding dispatch, 8 replicas (4 H100-TP4 + 4 A100-TP4)\n")
    print("| trace | requests | output tokens | simulated makespan s | wall s | wall us per request |")
    print("|---|---:|---:|---:|---:|---:|")
    cluster = parse_replicas(CLUSTER)
    conv = load_trace(ROOT / "traces" / "AzureLLMInferenceTrace_conv.csv").requests
    cases = [("Azure conv", conv)] + [("Azure conv resampled", resample(conv, n)) for n in (10_000, 100_000, 1_000_000)]
    for label, requests in cases:
        started = time.perf_counter()
        result = simulate(requests, cluster)
        elapsed = time.perf_counter() - started
        tokens = int(requests["output_tokens"].sum())
        print(f"| {label} | {len(requests):,} | {tokens:,} | {result.requests['finish_s'].max():,.0f} | {elapsed:.1f} | {elapsed / len(requests) * 1e6:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fidelity", "speed"])
    args = parser.parse_args()
    if args.only in (None, "fidelity"):
        fidelity()
    if args.only in (None, "speed"):
        speed()


if __name__ == "__main__":
    main()
