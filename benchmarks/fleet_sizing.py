"""Benchmark of fleet sizing: chosen fleets against their LP bound and the best single kind, and
the sizing MIP's solve time at scale.

    python benchmarks/fleet_sizing.py                 # both sections
    python benchmarks/fleet_sizing.py --only choice   # or: scale

choice: Llama-3.1-8B on the example price table (examples/candidates.toml: H100, A100, L40S,
H200, up to 16 each), the bundled ShareGPT batch (2,000 requests) and the ShareGPT stats
trace (30,731 requests, an offline batch), three deadlines each, window and until-done
billing. Each fleet is planned (CP-SAT, 5 s) and simulated with the actual lengths; the
deadline the model sees is tightened if simulation misses it. Cost over LP bound uses the
LP relaxation at the user's deadline; saving = 1 - cost / best single-kind fleet's cost.

scale: the sizing MIP alone (estimates, classes, LP bound and SCIP) on 100,000 requests (the
ShareGPT stats trace's 30,731 rows repeated in order, cut at 100k) and 8 candidate kinds
(H100, A100, L40S at tp1 and tp2, H200 and B200 at tp1). CPU seconds of this process plus
the solver's child process.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_trace, parse_replicas  # noqa: E402
from optimizer.planning.candidates import Candidate, load_candidates  # noqa: E402
from optimizer.planning.sizing import size_fleet  # noqa: E402
from optimizer.reporting.fleet_choice import choose_fleet, describe  # noqa: E402

MODEL = "llama-3.1-8b"
CANDIDATES = ROOT / "examples" / "candidates.toml"
TRACES = {"sharegpt_batch_2k.csv": (20.0, 40.0, 80.0), "sharegpt_8k_filtered_stats_llama2_tokenizer.csv": (150.0, 300.0, 600.0)}
#: Example prices (USD per GPU-hour) of the scale test's kinds, from the same public page as
#: examples/candidates.toml (B200: 0.00240 USD/s).
SCALE_KINDS = {"h100-tp1": 4.176, "h100-tp2": 4.176, "a100-tp1": 2.736, "a100-tp2": 2.736, "l40s-tp1": 1.908, "l40s-tp2": 1.908,
               "h200-tp1": 5.58, "b200-tp1": 8.64}


def cpu_s() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def choice() -> None:
    candidates = load_candidates(CANDIDATES, model=MODEL)
    print("\n### Chosen fleet against its LP bound and the best single kind\n")
    print("| trace | deadline s | billing | chosen fleet | cost USD | / LP bound | best single kind | its cost USD | saving "
          "| est. makespan s | sim. makespan s | met | rounds | CPU s |")
    print("|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for name, deadlines in TRACES.items():
        requests = load_trace(ROOT / "traces" / name, model=MODEL).requests
        for deadline in deadlines:
            for billing in ("window", "until-done"):
                started = cpu_s()
                found = choose_fleet(requests, candidates, deadline, billing=billing, planner="cp-sat", plan_time_limit_s=5.0)
                chosen, best = found.chosen, found.best_single
                single = f"{candidates[best].label} x{int(found.single[best].counts.sum())}" if best is not None else "none meets it"
                single_cost = f"{found.single[best].cost_usd:.4f}" if best is not None else "-"
                print(f"| {name} | {deadline:g} | {billing} | {describe(candidates, chosen.counts)} | {chosen.cost_usd:.4f} | "
                      f"{chosen.cost_usd / found.lower_bound_usd:.4f} | {single} | {single_cost} | {'-' if math.isnan(found.saving) else format(found.saving, '.1%')} | "
                      f"{chosen.sizing.estimated_makespan_s:,.1f} | {chosen.simulated_makespan_s:,.1f} | {'yes' if chosen.met else 'NO'} | "
                      f"{len(chosen.rounds)} | {cpu_s() - started:,.1f} |", flush=True)


def scale() -> None:
    base = load_trace(ROOT / "traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv", model=MODEL).requests
    rows = np.resize(np.arange(len(base)), 100_000)
    requests = base.iloc[rows].reset_index(drop=True)
    requests["request_id"] = [f"r{i}" for i in range(len(requests))]
    candidates = [Candidate(parse_replicas(f"{MODEL}@{kind}").replicas[0], price, 32) for kind, price in SCALE_KINDS.items()]
    print("\n### Sizing MIP at scale (100,000 requests, 8 candidate kinds, up to 32 each)\n")
    print("| deadline s | billing | fleet | cost USD | / LP bound | status | CPU s |")
    print("|---:|---|---|---:|---:|---|---:|")
    for deadline in (1800.0, 3600.0):
        for billing in ("window", "until-done"):
            started = cpu_s()
            sizing = size_fleet(requests, candidates, deadline, billing=billing, solver="scip", time_limit_s=30.0)
            used = cpu_s() - started
            print(f"| {deadline:g} | {billing} | {describe(candidates, sizing.counts)} | {sizing.cost_usd:.4f} | "
                  f"{sizing.cost_usd / sizing.lower_bound_usd:.4f} | {sizing.status} | {used:,.1f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("choice", "scale"))
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    if args.only in (None, "choice"):
        choice()
    if args.only in (None, "scale"):
        scale()
