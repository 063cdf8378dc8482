"""Tests that the simulator's results stay byte-identical to those of the code before issue 15's
speed-up, on every bundled trace, batching policy and dispatch rule.

The expected digests in tests/data/golden/simulations.json were written by this file's
`--write` mode run on the pre-change code (commit 16b90c4):

    .venv/bin/python tests/serving/test_equivalence.py --write

Each case hashes, at full float precision (repr, not the CSV's 6 decimals): the per-request
table, the per-replica counters (busy time, iterations, peak KV, ...), the JSON summary and
the moved/restarted/redone counts. Plans for the plan and repair cases are stored CSVs
(tests/data/golden/plan-*.csv, made by LPT once), so changes to the planner do not move them.
The large cases (100k and 1M requests) are checked by benchmarks/simulator_speed.py.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
sys.path.insert(0, str(ROOT))

from optimizer import load_trace, parse_replicas, read_plan, simulate, solve, summary
from optimizer.fleet.cluster import Cluster, EngineLimits, Replica
from optimizer.serving.batching import POLICIES
from optimizer.serving.deviation import Deviations, Failure, Slowdown
from optimizer.serving.metrics import with_slo_targets
from optimizer.serving.predictor import LengthBelief, noisy_oracle, with_predictions

TRACES = {
    "conv": "AzureLLMInferenceTrace_conv.csv",
    "code": "AzureLLMInferenceTrace_code.csv",
    "sharegpt2k": "sharegpt_batch_2k.csv",
    "sharegpt8k": "sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "gsm8k": "gsm8k_test.jsonl",
}
#: The first rows of each bundled trace (real arrivals, real lengths), enough to fill batches.
ROWS = 160
PAIR = "h100-tp4:1,a100-tp4:1"
DISPATCH_RULES = ("round-robin", "least-outstanding", "least-work", "random", "plan", "repair")


def trace(name: str, rows: int = ROWS, most_tokens: int | None = None) -> pd.DataFrame:
    """The first `rows` requests of a bundled trace (those of at most `most_tokens` prompt plus output)."""
    requests = load_trace(ROOT / "traces" / TRACES[name]).requests
    if most_tokens is not None:
        requests = requests[requests["prompt_tokens"] + requests["output_tokens"] <= most_tokens]
    return requests.iloc[:rows].reset_index(drop=True)


def small_kv_pair() -> Cluster:
    """Two replicas whose KV cache (about 6k tokens) holds only a few requests, so decodes preempt."""
    limits = EngineLimits(gpu_memory_utilization=0.84)
    return Cluster((Replica("small-0", "h100-80gb", 2, "llama2-70b", limits), Replica("small-1", "h100-80gb", 2, "llama2-70b", limits)))


def cases() -> dict[str, dict]:
    """Every golden case: name -> simulate() arguments (requests, cluster, and options)."""
    out: dict[str, dict] = {}
    for name in TRACES:
        requests = trace(name)
        for policy in POLICIES:
            out[f"{name}/{policy}/least-outstanding"] = {"trace": name, "policy": policy, "dispatch": "least-outstanding"}
        for dispatch in DISPATCH_RULES:
            out[f"{name}/sarathi/{dispatch}"] = {"trace": name, "policy": "sarathi", "dispatch": dispatch}
        for policy in ("vllm", "orca", "static"):
            out[f"{name}/{policy}/plan"] = {"trace": name, "policy": policy, "dispatch": "plan"}
        del requests
    # Preemption: a KV cache too small for the batch.
    for policy in POLICIES:
        out[f"sharegpt2k-small-kv/{policy}/least-outstanding"] = {"trace": "sharegpt2k", "rows": 60, "cluster": "small-kv", "policy": policy, "dispatch": "least-outstanding"}
    out["sharegpt2k-small-kv/sarathi/plan"] = {"trace": "sharegpt2k", "rows": 60, "cluster": "small-kv", "policy": "sarathi", "dispatch": "plan"}
    # Mispredicted lengths seen by length-aware policies and the repairer.
    for policy in ("s3", "uellm", "hybrid", "sarathi"):
        out[f"conv-predicted/{policy}/least-work"] = {"trace": "conv", "policy": policy, "dispatch": "least-work", "sigma": 0.6}
    out["sharegpt8k-predicted/sarathi/repair"] = {"trace": "sharegpt8k", "policy": "sarathi", "dispatch": "repair", "sigma": 0.6}
    # Deviations: jitter, a slowdown and a failure.
    for dispatch in ("repair", "plan", "least-outstanding"):
        for policy in ("sarathi", "vllm"):
            out[f"conv-deviations/{policy}/{dispatch}"] = {"trace": "conv", "cluster": "h100-tp4:2,a100-tp4:2", "policy": policy, "dispatch": dispatch, "deviations": True}
    # SLO targets drive SLAI's urgent decodes.
    out["conv-slo/slai/least-outstanding"] = {"trace": "conv", "policy": "slai", "dispatch": "least-outstanding", "tbt_s": 0.05}
    # A mixed fleet of tensor-parallel sizes and a whole offline batch on one replica.
    out["sharegpt2k-mixed-tp/sarathi/least-work"] = {"trace": "sharegpt2k", "cluster": "a100-tp2:1,h100-tp8:1", "policy": "sarathi", "dispatch": "least-work"}
    out["sharegpt2k-one/sarathi/plan"] = {"trace": "sharegpt2k", "rows": 400, "cluster": "h100-tp4:1", "policy": "sarathi", "dispatch": "plan"}
    return out


def prepare(case: dict) -> tuple[pd.DataFrame, Cluster, dict]:
    small = case.get("cluster") == "small-kv"
    requests = trace(case["trace"], case.get("rows", ROWS), most_tokens=3000 if small else None)
    cluster = small_kv_pair() if small else parse_replicas(case.get("cluster", PAIR))
    kwargs: dict = {"policy": case["policy"], "dispatch": case["dispatch"], "seed": 7}
    belief = None
    if "sigma" in case:
        requests = with_predictions(requests, noisy_oracle(requests["output_tokens"].to_numpy(dtype=float), case["sigma"], seed=5))
        belief = LengthBelief.exact()
    if "tbt_s" in case:
        requests = with_slo_targets(requests, tbt_s=case["tbt_s"], ttft_s=2.0)
    if case.get("deviations"):
        names = cluster.names
        kwargs["deviations"] = Deviations(arrival_jitter_s=0.5, slowdowns=(Slowdown(names[0], 5.0, 1.7),),
                                          failures=(Failure(names[-1], 12.0),), seed=3)
    if belief is not None:
        kwargs["belief"] = belief
    return requests, cluster, kwargs


def plan_path(case_name: str) -> Path:
    return GOLDEN / ("plan-" + case_name.replace("/", "_") + ".csv")


def run(case_name: str, case: dict):
    requests, cluster, kwargs = prepare(case)
    if case["dispatch"] in ("plan", "repair"):
        kwargs["plan"] = read_plan(plan_path(case_name))
    return requests, simulate(requests, cluster, **kwargs)


def digest(requests: pd.DataFrame, simulation) -> str:
    """sha256 of everything a simulation returns, floats at full precision."""
    figures = summary(simulation, requests)
    text = "\n".join([
        simulation.requests.to_csv(index=False, float_format=repr),
        simulation.replicas.to_csv(index=False, float_format=repr),
        json.dumps(figures, sort_keys=True, default=repr),
        repr((simulation.restarted_requests, simulation.redone_tokens, simulation.moved_requests)),
    ])
    return hashlib.sha256(text.encode()).hexdigest()


def expected() -> dict[str, str]:
    return json.loads((GOLDEN / "simulations.json").read_text())


CASES = cases()


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_simulation_is_byte_identical_to_the_code_before_the_speed_up(case_name):
    """Tests that this case's per-request times, replica counters and summary hash to exactly
    what the pre-change simulator produced (tests/data/golden/simulations.json)."""
    requests, simulation = run(case_name, CASES[case_name])
    assert digest(requests, simulation) == expected()[case_name]


def write() -> None:
    """Store the plans (LPT, once) and the digests of every case, from the code checked out now."""
    from optimizer.planning.plan import write_plan

    GOLDEN.mkdir(parents=True, exist_ok=True)
    digests = {}
    for case_name, case in CASES.items():
        if case["dispatch"] in ("plan", "repair") and not plan_path(case_name).exists():
            requests, cluster, _ = prepare(case)
            write_plan(solve(requests, cluster, solver="lpt").plan, plan_path(case_name))
        requests, simulation = run(case_name, case)
        digests[case_name] = digest(requests, simulation)
        print(case_name, digests[case_name][:12], flush=True)
    (GOLDEN / "simulations.json").write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/serving/test_equivalence.py --write   (on the pre-change code only)")
    write()
