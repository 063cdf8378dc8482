"""Metrics of a simulation, each defined once.

Times count from the trace's origin (its first arrival, time 0 in a loaded trace). For
request j with arrival a_j, start s_j (first scheduled), first token f_j, finish e_j and
o_j output tokens; replica r with busy time b_r (sum of its iteration times) and last
finish l_r; m replicas:

    makespan        M = max_j e_j
    utilization     U = sum_r b_r / (m M)
    work utilization W = sum_j w_j / (m M), w_j the least work of request j (actual
                    length) on the kind of replica that ran it (`min_work_s` of
                    `optimizer.fleet.estimates`, what the work bound sums): the bin-packing
                    utilization (with a prefix cache, each request's least work after reuse,
                    the shared blocks' one-time compute left out, so W stays a lower
                    figure). Every iteration costs at least the least works of what it
                    runs, so sum_j w_j <= sum_r b_r and W <= U <= 100% on every trace (pricing
                    it at the planner's B* instead could pass 100% whenever B* was too
                    small). Busy time spent below the best batching (ramp-up, draining,
                    stalls) lowers W but not U; W = LB_work / M on a homogeneous fleet.
    idle tail       I_r = M - l_r                       per replica
    TTFT            f_j - a_j                           time to first token
    TBT             (e_j - f_j) / (o_j - 1)             mean time between tokens (o_j > 1)
    E2E             e_j - a_j                           end-to-end latency
    queueing delay  s_j - a_j
    replica-hours   m M / 3600                          (failed replicas count until M)
    moved           requests the dispatcher moved between queues after placing them
    restarted       requests restarted elsewhere after their replica failed, and the KV
                    tokens (prompt and output) they had to recompute
    SLO attainment  share of requests meeting every target they have (ttft_target_s,
                    tbt_target_s, e2e_target_s); also over the achievable ones only (those
                    that meet theirs alone on the fastest replica, `optimizer.serving.slo`),
                    with the count of the others

Latencies are summarised at p50, p90 and p99.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.serving import slo
from optimizer.serving.results import Simulation

PERCENTILES = (50, 90, 99)


def summary(simulation: Simulation, requests: pd.DataFrame, estimates=None, achievable: np.ndarray | None = None) -> dict[str, object]:
    """The JSON summary of a simulation (requests: the trace table it ran, in the same
    row order; estimates: `optimizer.fleet.estimates` of it at the actual lengths, for W;
    achievable: which requests can meet their targets at all, `optimizer.serving.slo`)."""
    table = simulation.requests
    arrival = table["arrival_s"].to_numpy()
    first, finish, start = (table[c].to_numpy() for c in ("first_token_s", "finish_s", "start_s"))
    output = requests["output_tokens"].to_numpy(dtype=float)
    makespan = float(finish.max())
    replicas = simulation.replicas
    m = len(replicas)
    ttft, e2e, queueing = first - arrival, finish - arrival, start - arrival
    multi = output > 1
    tbt = (finish[multi] - first[multi]) / (output[multi] - 1)
    result: dict[str, object] = {
        "policy": simulation.policy,
        "dispatch": simulation.dispatch,
        "num_requests": int(len(table)),
        "num_replicas": m,
        "makespan_s": makespan,
        "utilization": float(replicas["busy_s"].sum() / (m * makespan)) if makespan > 0 else 0.0,
        "replica_hours": m * makespan / 3600,
        **({"work_utilization": work_utilization(simulation, estimates)} if estimates is not None else {}),
        "preemptions": int(table["preemptions"].sum()),
        "moved_requests": int(simulation.moved_requests),
        "restarted_requests": int(simulation.restarted_requests),
        "redone_tokens": int(simulation.redone_tokens),
        "failed_replicas": [str(name) for name, failed in zip(replicas["replica"], replicas["failed"]) if failed],
        "idle_tail_s": {name: float(makespan - last) for name, last in zip(replicas["replica"], replicas["last_finish_s"])},
    }
    for name, values in (("ttft_s", ttft), ("tbt_s", tbt), ("e2e_s", e2e), ("queueing_s", queueing)):
        result[name] = _percentiles(values)
    met = _slo_met(requests, ttft, e2e, finish, first, output)
    if met is not None:
        result["slo_attainment"] = float(met[0][met[1]].mean())
        if achievable is not None:
            feasible = met[1] & achievable
            result["slo_attainment_achievable"] = float(met[0][feasible].mean()) if feasible.any() else float("nan")
            result["slo_unachievable"] = int((met[1] & ~achievable).sum())
    return result


def work_utilization(simulation: Simulation, estimates) -> float:
    """W of the module docstring."""
    replicas = list(simulation.replicas["replica"])
    index = {name: r for r, name in enumerate(replicas)}
    kinds = estimates.kind_of_replica[simulation.requests["replica"].map(index).to_numpy(dtype=np.int64)]
    work = estimates.min_work_s[np.arange(len(kinds)), kinds].sum()
    makespan = float(simulation.requests["finish_s"].max())
    return float(work / (len(replicas) * makespan)) if makespan > 0 else 0.0


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {f"p{p}": float("nan") for p in PERCENTILES}
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def _slo_met(requests, ttft, e2e, finish, first, output) -> tuple[np.ndarray, np.ndarray] | None:
    """(met every target, has a target) per request, or None when none has a target."""
    targets = {c: requests[c].to_numpy(dtype=float) for c in ("ttft_target_s", "tbt_target_s", "e2e_target_s") if c in requests}
    has_target = np.zeros(len(requests), dtype=bool)
    met = np.ones(len(requests), dtype=bool)
    tbt = np.where(output > 1, (finish - first) / np.maximum(output - 1, 1), 0.0)
    for column, measured in (("ttft_target_s", ttft), ("tbt_target_s", tbt), ("e2e_target_s", e2e)):
        if column in targets:
            target = targets[column]
            given = ~np.isnan(target)
            has_target |= given
            met &= ~given | (measured <= target)
    if not has_target.any():
        return None
    return met, has_target


def with_slo_targets(requests: pd.DataFrame, *, ttft_s=None, tbt_s=None, e2e_s=None) -> pd.DataFrame:
    """The trace with these latency targets filled in where a request has none of its own:
    seconds, or length-scaled `BASE+PER/token` texts (`optimizer.serving.slo`)."""
    return slo.with_targets(requests, ttft=ttft_s, tbt=tbt_s, e2e=e2e_s)
