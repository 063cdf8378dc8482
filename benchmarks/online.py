"""Benchmark of online traffic: planned + repaired against the online rules, on latency targets.

    python benchmarks/online.py                     # every case (about 5 CPU minutes)
    python benchmarks/online.py --only code         # or: conv, long

Cases: the Azure code and conversation traces, and a long-prompt conversation trace built
from the Azure conversation trace (below); each on the default fleet (4 H100-TP4 + 4
A100-TP4) and a fleet half its size (2 + 2), at light load and at 1.5x overload. The Azure
traces run llama2-70b (the measured profiles); the long-prompt trace needs a long context
window and runs Llama-3.1-70B (kernel-table profiles) on the same GPUs.

Load: rho = (sum over requests of the least work on the fastest kind, `min_work_s`) /
(replicas x arrival span), the share of the fleet's best-case capacity the arrivals ask
for. Light: the trace's real arrivals when rho <= 1 there (both Azure traces), else arrivals
stretched to rho = 0.5 (the long-prompt trace); overload: arrival times scaled to rho = 1.5.

Policies (`optimizer.reporting.compare`, Sarathi batching, seed 0): round-robin,
least-outstanding, least-work, the plan followed blindly (mip: CP-SAT, 10 s, deterministic
budget, objective auto = latency for timed traces) and that plan repaired online (repair).

Targets: fixed (TTFT 2 s and E2E 60 s) and length-scaled (TTFT 0.5 s + 1 ms per prompt
token, E2E 60 s); attainment of the scaled ones is also given over the requests that can
meet them at all (`optimizer.serving.slo`). "est/sim" is the plan's estimated makespan
over the simulated makespan of the plan followed; W is work utilization
(`optimizer.serving.metrics`).

Long-prompt trace: the first 12,000 Azure conversation requests in arrival order, dealt to
120 conversations in turn (request i to conversation i mod 120); each request's prompt is
its own prompt plus its conversation's context so far (the previous turn's prompt and
output), and a conversation starts afresh when prompt plus output would pass 126,000
tokens. Arrivals, outputs and own prompts are the trace's; prompts reach 125,949 tokens.
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

from optimizer import load_trace, parse_replicas  # noqa: E402
from optimizer.fleet.estimates import estimate, hindsight_lengths  # noqa: E402
from optimizer.fleet.sources import profile_for  # noqa: E402
from optimizer.reporting.compare import compare  # noqa: E402
from optimizer.serving.metrics import summary  # noqa: E402
from optimizer.serving.slo import achievable, with_targets  # noqa: E402

POLICIES = ("round-robin", "least-outstanding", "least-work", "mip", "repair")
ONLINE = POLICIES[:3]
FLEETS = {"default": "h100-tp4:4,a100-tp4:4", "half": "h100-tp4:2,a100-tp4:2"}
LONG_MODEL = "llama-3.1-70b"
FIXED = {"ttft": "2s", "e2e": "60s"}
SCALED = {"ttft": "0.5s+1ms/token", "e2e": "60s"}
OVERLOAD = 1.5
LIGHT = 0.15
TIME_LIMIT_S = 10.0


def long_prompt_trace(n: int = 12_000, conversations: int = 120, limit_tokens: int = 126_000) -> pd.DataFrame:
    """The long-prompt conversation trace of the module docstring (deterministic)."""
    conv = load_trace(ROOT / "traces" / "AzureLLMInferenceTrace_conv.csv").requests
    conv = conv.sort_values("arrival_s", kind="stable").iloc[:n].reset_index(drop=True)
    own, output = conv["prompt_tokens"].to_numpy(np.int64), conv["output_tokens"].to_numpy(np.int64)
    context = np.zeros(conversations, dtype=np.int64)
    prompt = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = i % conversations
        prompt[i] = context[c] + own[i] if context[c] + own[i] + output[i] <= limit_tokens else own[i]
        context[c] = prompt[i] + output[i]
    table = conv.copy()
    table["prompt_tokens"] = prompt
    table["request_id"] = "long-" + pd.Series(np.arange(n)).astype(str)
    return table


def offered_load(requests: pd.DataFrame, cluster) -> float:
    """rho of the module docstring."""
    found = estimate(requests, cluster, hindsight_lengths(requests))
    least = np.where(found.eligible, found.min_work_s, np.inf).min(axis=1).sum()
    return float(least / len(cluster) / requests["arrival_s"].max())


def at_load(requests: pd.DataFrame, rho_now: float, rho: float) -> pd.DataFrame:
    return requests.assign(arrival_s=requests["arrival_s"] * rho_now / rho)


def run_case(label: str, requests: pd.DataFrame, cluster) -> list[str]:
    started = time.process_time()
    fixed = with_targets(requests, **FIXED)
    scaled = with_targets(requests, **SCALED)
    result = compare(fixed, cluster, policies=POLICIES, time_limit_s=TIME_LIMIT_S, deterministic=True)
    found = estimate(scaled, cluster, hindsight_lengths(scaled))
    feasible = achievable(scaled, found, [profile_for(r, None) for r in cluster.first_of_each_kind])
    rows = []
    for row in result.table.itertuples(index=False):
        simulation = result.simulations[f"{row.policy}/sarathi"]
        figures = summary(simulation, scaled, found, feasible)
        rows.append({"policy": row.policy, "fixed": row.slo_attainment, "scaled": figures["slo_attainment"],
                     "scaled_achievable": figures.get("slo_attainment_achievable", np.nan), "ttft_p99": row.ttft_p99_s,
                     "makespan": row.makespan_s, "estimated": row.estimated_makespan_s, "w": row.work_utilization})
    table = pd.DataFrame(rows)
    online = table[table["policy"].isin(ONLINE)]
    repair = table[table["policy"] == "repair"].iloc[0]
    lines = [f"\n#### {label}\n", f"{len(requests):,} requests; scaled targets unachievable for {int((~feasible).sum()):,}; "
             f"hindsight bound {result.bounds.best_s:,.1f} s; {time.process_time() - started:,.0f} CPU s\n",
             "| policy | SLO met (2 s / 60 s) | SLO met (scaled) | scaled, of achievable | TTFT p99 s | makespan s | est/sim | W |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["estimated"] / r["makespan"] if np.isfinite(r["estimated"]) else np.nan
        lines.append(f"| {r['policy']} | {r['fixed']:.1%} | {r['scaled']:.1%} | {r['scaled_achievable']:.1%} | {r['ttft_p99']:,.2f} | "
                     f"{r['makespan']:,.1f} | {'-' if np.isnan(ratio) else f'{ratio:.3f}'} | {r['w']:.1%} |")
    verdicts = []
    for column, name, better in (("fixed", "fixed SLO", max), ("scaled_achievable", "scaled SLO", max), ("ttft_p99", "TTFT p99", min)):
        best = better(online[column])
        ok = repair[column] >= best - 1e-12 if better is max else repair[column] <= best + 1e-12
        verdicts.append(f"{name} {'met' if ok else 'MISSED'} ({repair[column]:.4g} vs best online {best:.4g})")
    best_makespan = online["makespan"].min()
    verdicts.append(f"makespan {'met' if repair['makespan'] <= 1.01 * best_makespan else 'MISSED'} "
                    f"({repair['makespan'] / best_makespan - 1:+.2%} vs best online)")
    plan = table[table["policy"] == "mip"].iloc[0]
    verdicts.append(f"estimate {plan['estimated'] / plan['makespan'] - 1:+.2%} of simulated; W max {table['w'].max():.1%}")
    lines.append("\nrepair: " + "; ".join(verdicts))
    return lines


def cases(only: str | None):
    azure = {"code": "AzureLLMInferenceTrace_code.csv", "conv": "AzureLLMInferenceTrace_conv.csv"}
    for key, name in azure.items():
        if only not in (None, key):
            continue
        requests = load_trace(ROOT / "traces" / name).requests
        for fleet, spec in FLEETS.items():
            cluster = parse_replicas(spec)
            rho = offered_load(requests, cluster)
            yield f"Azure {key}, {fleet} fleet ({spec}), light: real arrivals (rho {rho:.2f})", requests, cluster
            yield f"Azure {key}, {fleet} fleet ({spec}), overload: rho {OVERLOAD}", at_load(requests, rho, OVERLOAD), cluster
    if only in (None, "long"):
        requests = long_prompt_trace()
        for fleet, spec in FLEETS.items():
            spec = ",".join(f"{LONG_MODEL}@{group}" for group in spec.split(","))
            cluster = parse_replicas(spec)
            rho = offered_load(requests, cluster)
            yield f"Long-prompt conversations, {fleet} fleet ({spec}), light: rho {LIGHT}", at_load(requests, rho, LIGHT), cluster
            yield f"Long-prompt conversations, {fleet} fleet ({spec}), overload: rho {OVERLOAD}", at_load(requests, rho, OVERLOAD), cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["code", "conv", "long"])
    args = parser.parse_args()
    for label, requests, cluster in cases(args.only):
        print("\n".join(run_case(label, requests, cluster)), flush=True)


if __name__ == "__main__":
    main()
