"""Prefix caching: plans and routers side by side against the bound with reuse, and the cache's cost in simulation speed.

    python benchmarks/prefix_cache.py                 # both tables (a few minutes)
    python benchmarks/prefix_cache.py --only plans    # or: speed, estimates

Traces (bundled, made by traces/derive.py; see traces/README.md):
- traces/sharegpt_conversations_mooncake.jsonl: 1,487 turns of 400 conversations that resend
  their history behind a 1,024-token system prompt (Mooncake format, 512-token hash_ids);
- traces/gsm8k_rollouts_16.csv: 128 GSM8K prompts behind an 8-shot preamble, 16 samples each
  (native format, prefix_group / prefix_tokens).

Plans tables: each trace on 4 H100-TP4 + 4 A100-TP4 llama2-70b replicas (the default fleet),
then on 8 H100-TP4.
The prefix-aware plan is `solve(..., prefix_cache=True)` (the group MIP), the prefix-blind
plan `solve(..., prefix_cache=False)`, both CP-SAT with a 10 s limit and --deterministic;
round-robin, least-work and cache-affinity (SGLang's cache-aware router) dispatch at arrival.
Every run is simulated with Sarathi batching and the prefix cache on; makespan is the last
finish, the bound is `trace_bounds` with reuse (and, for reference, without), hit rate is
cached prompt tokens / prompt tokens looked up.

Estimates table (where the planner's estimates miss, with no cache involved): the blind
plan (CP-SAT 10 s) of each trace on the default fleet, simulated with the cache off; per
replica kind, the range of simulated finish / the plan's estimated makespan.

Speed table: the CPU seconds (process time) of `simulate()` with the cache on and off, on the
same trace and dispatch (least-outstanding), median of 9 runs each in this process, off and on
in turn; the last row
is the conversations trace with 8 samples of every turn (`samples_per_prompt=8`, 11,896
requests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_trace, parse_replicas, simulate, solve, trace_bounds  # noqa: E402

TRACES = {
    "conversations (Mooncake format)": ROOT / "traces" / "sharegpt_conversations_mooncake.jsonl",
    "GSM8K rollouts, 16 samples": ROOT / "traces" / "gsm8k_rollouts_16.csv",
}
FLEET = "h100-tp4:4,a100-tp4:4"
FLEETS = (FLEET, "h100-tp4:8")


def hit_rate(simulation) -> float:
    replicas = simulation.replicas
    return float(replicas["cached_prompt_tokens"].sum() / replicas["prompt_tokens_looked_up"].sum())


def plans() -> None:
    for fleet in FLEETS:
        for name, path in TRACES.items():
            plans_on(name, load_trace(path).requests, fleet)


def plans_on(name: str, requests, fleet: str) -> None:
    """One table: the bound, the two plans and the three routers on one trace and fleet."""
    cluster = parse_replicas(fleet)
    bound = trace_bounds(requests, cluster)[0]
    blind_bound = trace_bounds(requests, cluster, prefix_cache=False)[0]
    print(f"\n#### {name}: {len(requests):,} requests on {fleet}; bound with reuse {bound.best_s:,.1f} s "
          f"({bound.binding}), without reuse {blind_bound.best_s:,.1f} s\n")
    print("| method | makespan s | makespan / bound | hit rate | estimated s |")
    print("|---|---:|---:|---:|---:|")
    runs = []
    for label, aware in (("prefix-aware plan (group MIP, CP-SAT 10 s)", True), ("prefix-blind plan (CP-SAT 10 s)", False)):
        planned = solve(requests, cluster, time_limit_s=10, deterministic=True, prefix_cache=aware)
        runs.append((label, simulate(requests, cluster, dispatch="plan", plan=planned.plan), f"{planned.objective:,.1f}"))
    for label, rule in (("round-robin", "round-robin"), ("least-work", "least-work"),
                        ("cache-affinity router (SGLang cache-aware: 0.3, 64, 1.5)", "cache-affinity")):
        runs.append((label, simulate(requests, cluster, dispatch=rule), ""))
    for label, simulation, estimated in runs:
        makespan = float(simulation.requests["finish_s"].max())
        print(f"| {label} | {makespan:,.1f} | {makespan / bound.best_s:.3f} | {hit_rate(simulation):.1%} | {estimated} |")


def estimates() -> None:
    cluster = parse_replicas(FLEET)
    print("\n| trace | replica kind | simulated finish / estimate |")
    print("|---|---|---|")
    for name, path in TRACES.items():
        requests = load_trace(path).requests
        planned = solve(requests, cluster, time_limit_s=10, deterministic=True, prefix_cache=False)
        replicas = simulate(requests, cluster, dispatch="plan", plan=planned.plan, prefix_cache=False).replicas
        kinds = [replica.kind for replica in cluster.replicas]
        for kind in dict.fromkeys(kinds):
            ratios = replicas["last_finish_s"][[k == kind for k in kinds]] / planned.objective
            print(f"| {name} | {kind} | {ratios.min():.3f} - {ratios.max():.3f} |")


def speed() -> None:
    cluster = parse_replicas(FLEET)
    print("\n| trace | requests | cache off CPU s | cache on CPU s | on / off |")
    print("|---|---:|---:|---:|---:|")
    cases = [(name, load_trace(path).requests) for name, path in TRACES.items()]
    cases.append(("conversations, 8 samples per turn", load_trace(TRACES["conversations (Mooncake format)"], samples_per_prompt=8).requests))
    for name, requests in cases:
        samples = {False: [], True: []}
        for _ in range(9):  # off and on in turn, so a change in the machine's load hits both
            for on in (False, True):
                started = time.process_time()
                simulate(requests, cluster, prefix_cache=on)
                samples[on].append(time.process_time() - started)
        times = {on: statistics.median(values) for on, values in samples.items()}
        print(f"| {name} | {len(requests):,} | {times[False]:.3f} | {times[True]:.3f} | {times[True] / times[False]:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("plans", "estimates", "speed"))
    args = parser.parse_args()
    if args.only in (None, "plans"):
        plans()
    if args.only in (None, "estimates"):
        estimates()
    if args.only in (None, "speed"):
        speed()
