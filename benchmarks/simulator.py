"""Benchmark of the simulator: fidelity against the planner's estimates, and speed.

    python benchmarks/simulator.py                # all sections
    python benchmarks/simulator.py --only speed   # or: fidelity, measurements

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


def measurements() -> None:
    print("\n### Simulator against the GPU measurements (Splitwise perf_model.csv, token_size <= 256)\n")
    print("Each point: B identical requests (prompt P, output T) on one replica, vLLM batching (one")
    print("prefill of all B prompts, then decode). Prefill: the first token's time; decode: the mean")
    print("iteration time after it. Points whose KV cache cannot hold B x (P + T) are skipped.\n")
    print("| model | GPU | TP | points | skipped (KV) | prefill MAPE % | decode MAPE % | worst prefill % | worst decode % |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    from optimizer.fleet.measurements import read_measurements

    data = read_measurements(ROOT / "optimizer" / "fleet" / "data" / "splitwise_perf_model.csv")
    data = data[data["token_size"] <= 256]
    for (model, gpu, tp), rows in data.groupby(["model", "hardware", "tensor_parallel"]):
        points = rows.groupby(["prompt_size", "batch_size", "token_size"])[["prompt_time", "token_time"]].median().reset_index()
        prefill_errors, decode_errors, skipped = [], [], 0
        for point in points.itertuples(index=False):
            simulated = simulate_point(model, gpu, int(tp), int(point.prompt_size), int(point.batch_size), int(point.token_size))
            if simulated is None:
                skipped += 1
                continue
            prefill_errors.append(abs(simulated[0] / point.prompt_time - 1) * 100)
            decode_errors.append(abs(simulated[1] / point.token_time - 1) * 100)
        print(f"| {model} | {gpu} | {tp} | {len(prefill_errors)} | {skipped} | {np.mean(prefill_errors):.2f} | {np.mean(decode_errors):.2f} | "
              f"{np.max(prefill_errors):.1f} | {np.max(decode_errors):.1f} |", flush=True)


def simulate_point(model: str, gpu: str, tp: int, prompt: int, batch: int, tokens: int) -> tuple[float, float] | None:
    """(prefill ms, mean decode iteration ms) of B identical requests, or None if they do not fit."""
    from optimizer.fleet.cluster import Cluster, EngineLimits, Replica

    limits = EngineLimits(max_num_seqs=batch, max_num_batched_tokens=prompt * batch)
    replica = Replica("r", gpu, tp, model, limits)
    if replica.kv_capacity_tokens < batch * (prompt + tokens + limits.block_size_tokens):
        return None
    requests = pd.DataFrame({
        "request_id": [str(i) for i in range(batch)], "arrival_s": 0.0, "prompt_tokens": prompt,
        "output_tokens": pd.array([tokens] * batch, dtype="Int64"), "predicted_output_tokens": pd.array([pd.NA] * batch, dtype="Int64"),
        "model": "", "priority": 0,
    })
    table = simulate(requests, Cluster((replica,)), policy="vllm").requests
    first, finish = float(table["first_token_s"].max()), float(table["finish_s"].max())
    return first * 1e3, (finish - first) / (tokens - 1) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fidelity", "measurements", "speed"])
    args = parser.parse_args()
    if args.only in (None, "fidelity"):
        fidelity()
    if args.only in (None, "measurements"):
        measurements()
    if args.only in (None, "speed"):
        speed()


if __name__ == "__main__":
    main()
