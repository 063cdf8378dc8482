"""Benchmark of the online repairer: offline plans under deviation, side by side.

    python benchmarks/repair.py                   # all sections
    python benchmarks/repair.py --only oracle     # or: sweep, predictor, failure, online

Every section runs, on the same trace, fleet, seed and deviations, in one process:
the offline plan (made from predicted lengths) followed blindly, the repairer on that plan,
round-robin, least outstanding requests, least remaining work, and as the floor the
planner given the actual lengths in hindsight (its plan simulated) and the hindsight lower
bound (`trace_bounds` on the actual lengths). Plans: CP-SAT, 10 s. Batching: Sarathi.
Fleet: 4 H100-TP4 + 4 A100-TP4 llama2-70b.

- oracle: the bundled ShareGPT batch (2,000 requests), predicted = actual x lognormal
  error, sigma = 0.5, seed 0.
- sweep: the same batch at sigma 0.1, 0.25 and 0.5, three seeds each (makespan ratios only).
- predictor: the same batch with predictions from the bucket-median predictor fitted on
  the rest of the ShareGPT stats (28,731 requests not in the batch); its error on its own
  held-out 20% and on the batch is printed first.
- failure: the oracle section with one H100 replica failing halfway through the plan;
  the bound is that of the surviving fleet.
- online: the Azure conv trace (19,366 requests) at its real arrival times, sigma = 0.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_trace, parse_replicas, simulate, solve, summary, trace_bounds  # noqa: E402
from optimizer.fleet.cluster import Cluster  # noqa: E402
from optimizer.serving.deviation import Deviations, Failure  # noqa: E402
from optimizer.serving.predictor import (  # noqa: E402
    LengthBelief,
    fit_predictor,
    noisy_oracle,
    prediction_error,
    split_history,
    with_predictions,
)

CLUSTER = "h100-tp4:4,a100-tp4:4"
TIME_LIMIT_S = 10.0
SIGMA = 0.5
SEED = 0


def compare(title: str, requests, predicted, cluster: Cluster, belief: LengthBelief, deviations: Deviations | None = None,
            bound_cluster: Cluster | None = None) -> None:
    """One table: every dispatch on the same deviations, against the hindsight floor."""
    planned = with_predictions(requests, predicted)
    started = time.perf_counter()
    plan = solve(planned, cluster, time_limit_s=TIME_LIMIT_S, seed=SEED).plan
    plan_s = time.perf_counter() - started
    hindsight = solve(requests, cluster, time_limit_s=TIME_LIMIT_S, seed=SEED)
    bound = trace_bounds(requests, bound_cluster or cluster)[0].best_s
    print(f"\n### {title}\n")
    print(f"Hindsight lower bound {bound:,.1f} s{' (surviving fleet)' if bound_cluster else ''}; plan from predictions made in {plan_s:.1f} s.\n")
    print("| dispatch | makespan s | makespan / hindsight bound | p99 TTFT s | p99 E2E s | moved | restarted | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    runs = [
        ("plan, followed blindly", dict(dispatch="plan", plan=plan)),
        ("repair", dict(dispatch="repair", plan=plan, belief=belief)),
        ("round-robin", dict(dispatch="round-robin")),
        ("least-outstanding", dict(dispatch="least-outstanding")),
        ("least-work", dict(dispatch="least-work")),
        ("hindsight plan (actual lengths)", dict(dispatch="plan", plan=hindsight.plan)),
    ]
    for name, kwargs in runs:
        table = requests if name.startswith("hindsight") else planned
        started = time.perf_counter()
        sim = simulate(table, cluster, policy="sarathi", seed=SEED, deviations=deviations, **kwargs)
        wall = time.perf_counter() - started
        figures = summary(sim, requests)
        assert len(sim.requests) == len(requests) and sim.requests["finish_s"].notna().all()
        print(f"| {name} | {figures['makespan_s']:,.1f} | {figures['makespan_s'] / bound:.4f} | {figures['ttft_s']['p99']:,.2f} | "
              f"{figures['e2e_s']['p99']:,.2f} | {sim.moved_requests:,} | {sim.restarted_requests:,} | {wall:.1f} |", flush=True)


def batch():
    return load_trace(ROOT / "traces" / "sharegpt_batch_2k.csv").requests


def oracle() -> None:
    requests = batch()
    predicted = noisy_oracle(requests["output_tokens"].to_numpy(), SIGMA, SEED)
    error = prediction_error(predicted, requests["output_tokens"].to_numpy())
    compare(f"ShareGPT batch (2,000), noisy oracle sigma {SIGMA} (MAE {error['mae_tokens']:.0f} tokens, "
            f"{error['within_100']:.0%} within 100)", requests, predicted, parse_replicas(CLUSTER), LengthBelief.lognormal(SIGMA))


def predictor() -> None:
    requests = batch()
    stats = load_trace(ROOT / "traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv").requests
    in_batch = set(requests["request_id"].str.removeprefix("sharegpt-"))
    history = stats[~stats["request_id"].isin(in_batch)]
    train, held_out = split_history(history)
    check = fit_predictor(train)
    held = prediction_error(check.predict(held_out), held_out["output_tokens"].to_numpy())
    fitted = fit_predictor(history)
    predicted = fitted.predict(requests)
    on_batch = prediction_error(predicted, requests["output_tokens"].to_numpy())
    print("\n### Output-length predictor (median per prompt-length bucket), ShareGPT\n")
    print("| fitted on | evaluated on | requests | MAE tokens | within 50 | within 100 |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| first 80% of history ({len(train):,}) | last 20% ({len(held_out):,}) | {held['requests']:,} | {held['mae_tokens']:.1f} | {held['within_50']:.1%} | {held['within_100']:.1%} |")
    print(f"| all history ({len(history):,}) | the batch | {on_batch['requests']:,} | {on_batch['mae_tokens']:.1f} | {on_batch['within_50']:.1%} | {on_batch['within_100']:.1%} |")
    compare("ShareGPT batch (2,000), fitted predictor", requests, predicted, parse_replicas(CLUSTER), fitted.belief)


def failure() -> None:
    requests = batch()
    cluster = parse_replicas(CLUSTER)
    predicted = noisy_oracle(requests["output_tokens"].to_numpy(), SIGMA, SEED)
    halfway = solve(with_predictions(requests, predicted), cluster, time_limit_s=TIME_LIMIT_S, seed=SEED).objective / 2
    failed = cluster.names[0]
    survivors = Cluster(tuple(r for r in cluster.replicas if r.name != failed))
    compare(f"ShareGPT batch, sigma {SIGMA}, {failed} fails at {halfway:.1f} s (halfway)", requests, predicted, cluster,
            LengthBelief.lognormal(SIGMA), Deviations(failures=(Failure(failed, halfway),)), bound_cluster=survivors)


def online() -> None:
    requests = load_trace(ROOT / "traces" / "AzureLLMInferenceTrace_conv.csv").requests
    predicted = noisy_oracle(requests["output_tokens"].to_numpy(), SIGMA, SEED)
    compare(f"Azure conv (19,366) at its real arrivals, sigma {SIGMA}", requests, predicted, parse_replicas(CLUSTER), LengthBelief.lognormal(SIGMA))


def sweep() -> None:
    """Makespan / hindsight bound as the length error grows, over seeds (same plans per seed)."""
    requests = batch()
    cluster = parse_replicas(CLUSTER)
    bound = trace_bounds(requests, cluster)[0].best_s
    hindsight = solve(requests, cluster, time_limit_s=TIME_LIMIT_S, seed=SEED).plan
    floor = simulate(requests, cluster, dispatch="plan", plan=hindsight)
    print("\n### ShareGPT batch (2,000): makespan / hindsight lower bound as the length error grows\n")
    print(f"Hindsight plan (actual lengths), simulated: {floor.requests['finish_s'].max() / bound:.4f}.\n")
    print("| sigma | seed | plan, blind | repair | least-outstanding | least-work | repair better than blind and LOR |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for sigma in (0.1, 0.25, 0.5):
        for seed in (0, 1, 2):
            planned = with_predictions(requests, noisy_oracle(requests["output_tokens"].to_numpy(), sigma, seed))
            plan = solve(planned, cluster, time_limit_s=TIME_LIMIT_S, seed=SEED).plan
            ratios = {}
            for name, kwargs in (("plan", dict(plan=plan)), ("repair", dict(plan=plan, belief=LengthBelief.lognormal(sigma))),
                                 ("least-outstanding", {}), ("least-work", {})):
                sim = simulate(planned, cluster, dispatch=name, policy="sarathi", seed=SEED, **kwargs)
                ratios[name] = sim.requests["finish_s"].max() / bound
            better = ratios["repair"] < min(ratios["plan"], ratios["least-outstanding"])
            print(f"| {sigma} | {seed} | {ratios['plan']:.4f} | {ratios['repair']:.4f} | {ratios['least-outstanding']:.4f} | "
                  f"{ratios['least-work']:.4f} | {'yes' if better else 'no'} |", flush=True)


SECTIONS = {"oracle": oracle, "sweep": sweep, "predictor": predictor, "failure": failure, "online": online}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SECTIONS))
    args = parser.parse_args()
    for name, section in SECTIONS.items():
        if args.only in (None, name):
            section()
