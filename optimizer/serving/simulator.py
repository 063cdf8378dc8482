"""Iteration-level serving simulator: a trace replayed on a cluster with continuous batching.

Each replica is an engine (`optimizer.serving.engine`) that runs iterations one after another;
its iteration-time model, KV cache and preemption are described there.

- Dispatch (`optimizer.serving.dispatch`) places each request on a replica at its arrival, looking
  at the replicas as they are at their first iteration boundary at or after that time. A
  dispatcher with an `interval_s` (the repairer) also acts every interval_s of simulated
  time, moving requests that have not started between waiting queues.
- Deviations (`optimizer.serving.deviation`): real arrivals may differ from the trace's, a replica
  may slow down (its iteration times scaled from a given time) or fail (its unfinished
  requests dispatched again, restarted by recomputation, counted).
- Prefix caching (`optimizer.serving.prefix_cache`): when the trace says which requests
  share prompt prefixes (`optimizer.traces.prefixes`), each replica caches the prefix
  blocks it computes and later requests skip them; `prefix_cache=False` turns it off and
  gives exactly the results of an engine without one.
- Deterministic: events in (time, kind: failure, arrival, tick; trace order); replicas
  advance in cluster order; the only random draws are seeded (dispatch, deviations).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.fleet.cluster import Cluster
from optimizer.fleet.estimates import (
    Estimates,
    estimate,
    planning_lengths,
)
from optimizer.fleet.sources import profile_for
from optimizer.serving.batching import POLICIES
from optimizer.serving.deviation import Deviations
from optimizer.serving.dispatch import make_dispatcher
from optimizer.serving.engine import Engine, Sequence
from optimizer.serving.lockstep import LockstepEngine
from optimizer.serving.prefix_cache import PrefixCache, cache_counters
from optimizer.serving.predictor import LengthBelief
from optimizer.traces.prefixes import has_prefixes, prefix_chains, prefix_units
from optimizer.serving.results import Simulation


def simulate(
    requests: pd.DataFrame,
    cluster: Cluster,
    *,
    dispatch: str = "least-outstanding",
    policy: str = "sarathi",
    plan: pd.DataFrame | None = None,
    seed: int = 0,
    profiles: dict | None = None,
    estimates: Estimates | None = None,
    policy_options: dict[str, float] | None = None,
    dispatch_options: dict[str, float] | None = None,
    deviations: Deviations | None = None,
    belief: LengthBelief | None = None,
    progress: Callable[[float], None] | None = None,
    reference: bool = False,
    prefix_cache: bool = True,
) -> Simulation:
    """Replay `requests` (with their actual output lengths) on `cluster`.

    Dispatchers see `estimates` made from the planning lengths (predictions where the
    trace has them); the engines run the actual lengths.

    Args:
        policy_options: the batching policy's named options (see `optimizer.serving.batching`).
        dispatch_options: the dispatcher's named options (the repairer's, `optimizer.serving.dispatch`).
        deviations: arrival jitter, slowdowns and failures to inject.
        belief: spread of actual / predicted lengths, for dispatchers that condition on
            progress (default: predictions are exact).
        progress: called with the simulated time (seconds) as it advances; it only
            watches, so results are the same with or without it.
        reference: run every replica on the reference engine, even under lockstep
            policies (same results, slower; for checking the lockstep engine).
        prefix_cache: replicas reuse the KV blocks of prompt prefixes the trace declares
            shared (no effect on traces without prefix information).
    """
    if policy not in POLICIES:
        raise OptimizerError(f"Unknown batching policy {policy!r}; choose one of: {', '.join(POLICIES)}.")
    output = requests["output_tokens"]
    if output.isna().any():
        request_id = requests["request_id"][output.isna()].iloc[0]
        raise OptimizerError(f"Request {request_id!r} has no output_tokens; the simulator runs actual lengths.")
    deviations = deviations or Deviations()
    deviations.check(cluster)
    estimates = estimates or estimate(requests, cluster, planning_lengths(requests), profiles=profiles)
    dispatcher = make_dispatcher(dispatch, requests, cluster, estimates, plan=plan, seed=seed,
                                 options=dispatch_options, belief=belief or LengthBelief.exact())
    POLICIES[policy](**(policy_options or {}))  # validate the options once, before any work
    kind = Engine if reference or not getattr(POLICIES[policy], "lockstep", False) else LockstepEngine
    engines = [kind(r, profile_for(r, profiles), POLICIES[policy](**(policy_options or {}))) for r in cluster.replicas]
    if prefix_cache and has_prefixes(requests):
        _attach_caches(engines, requests)
    if progress is not None:
        for engine in engines:
            engine.progress = progress
    for slow in deviations.slowdowns:
        engine = engines[cluster.names.index(slow.replica)]
        engine.slow_from, engine.slow_factor = slow.at_s, slow.factor
    arrival = deviations.arrivals(requests["arrival_s"].to_numpy(dtype=float))
    prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64).tolist()  # plain ints and floats: read per arrival
    out = output.to_numpy(dtype=np.int64).tolist()
    # Length-aware policies see predictions where the trace has them, else actual lengths.
    predicted = requests["predicted_output_tokens"].astype(object).where(requests["predicted_output_tokens"].notna(), None).tolist() if "predicted_output_tokens" in requests else [None] * len(requests)
    tbt = requests["tbt_target_s"].fillna(np.inf).to_numpy(dtype=float).tolist() if "tbt_target_s" in requests else [math.inf] * len(requests)
    e2e = requests["e2e_target_s"].fillna(np.inf).to_numpy(dtype=float).tolist() if "e2e_target_s" in requests else [math.inf] * len(requests)
    sequences: list[Sequence | None] = [None] * len(requests)
    failures = sorted(deviations.failures, key=lambda f: (f.at_s, cluster.names.index(f.replica)))
    interval = getattr(dispatcher, "interval_s", None)
    next_tick = interval if interval else math.inf
    arrivals = np.argsort(arrival, kind="stable").tolist()
    arrival_s = arrival.tolist()
    i = f = 0
    redone = 0
    # After an arrival, the other replicas are already at their boundary for that time: at
    # the next arrival of the same time only the replica that took it needs a look.
    caught_up, changed = math.nan, None

    def place(seq: Sequence, now: float) -> Engine:
        r = dispatcher.choose(seq.row, engines, now)
        dispatcher.placed(seq.row, r)
        engines[r].enqueue(seq, now)
        return engines[r]

    while True:
        next_arrival = arrival_s[arrivals[i]] if i < len(arrivals) else math.inf
        next_failure = failures[f].at_s if f < len(failures) else math.inf
        # Ticks matter while something can still be moved or arrive.
        ticking = i < len(arrivals) or any(e.waiting for e in engines)
        now = min(next_arrival, next_failure, next_tick if ticking else math.inf)
        if now == math.inf:
            break
        for engine in (changed,) if now == caught_up else engines:
            engine.run_until(now)
        caught_up = math.nan
        if now == next_failure:
            engine = engines[cluster.names.index(failures[f].replica)]
            f += 1
            unfinished, lost = engine.fail()
            redone += lost
            # The failure shows at the replica's iteration boundary; the others catch up.
            for other in engines:
                other.run_until(engine.clock)
            for seq in sorted(unfinished, key=lambda s: (s.queue_key, s.row)):  # in their queue order
                place(seq, engine.clock)
        elif now == next_arrival:
            j = arrivals[i]
            i += 1
            seq = Sequence(j, prompt[j], out[j], arrival_s[j], dispatcher.queue_key(j),
                           predicted=None if predicted[j] is None else int(predicted[j]), tbt_target=tbt[j], e2e_target=e2e[j])
            sequences[j] = seq
            changed, caught_up = place(seq, arrival_s[j]), now
        else:
            dispatcher.rebalance(now, engines)
            next_tick += interval
    for engine in engines:
        engine.run_until(math.inf)
    return _results(requests, cluster, engines, sequences, dispatcher, policy, dispatch, arrival, redone)


def _attach_caches(engines: list[Engine], requests: pd.DataFrame) -> None:
    """A prefix cache per replica, with each request's units at the replica's block size."""
    chains = prefix_chains(requests)
    by_block = {}
    for engine in engines:
        block = engine.limits.block_size_tokens
        if block not in by_block:
            by_block[block] = prefix_units(chains, block)
        engine.cache = PrefixCache(by_block[block].blocks, block)
        engine.unit_chains = by_block[block].chains


def _results(requests, cluster, engines, sequences, dispatcher, policy, dispatch, arrival, redone) -> Simulation:
    names = np.asarray(cluster.names, dtype=object)
    replica = np.asarray(dispatcher.replica_of, dtype=np.int64)
    rows = [(seq.start, seq.first_token, seq.finish, seq.preemptions, seq.restarts) for seq in sequences]
    start, first, finish, preemptions, restarts = (np.array(column) for column in zip(*rows))
    if np.isnan(finish).any():
        lost = requests["request_id"].iloc[int(np.argmax(np.isnan(finish)))]
        raise OptimizerError(f"Internal error: request {lost!r} never finished in the simulation.")
    table = pd.DataFrame(
        {
            "request_id": requests["request_id"].to_numpy(),
            "replica": names[replica],
            "arrival_s": arrival,
            "start_s": start.astype(float),
            "first_token_s": first.astype(float),
            "finish_s": finish.astype(float),
            "preemptions": preemptions.astype(np.int64),
            "restarts": restarts.astype(np.int64),
        }
    )
    counters = cache_counters(engines)
    if counters is not None:
        table["cached_tokens"] = np.array([seq.cached_tokens for seq in sequences], dtype=np.int64)
    counts = np.bincount(replica, minlength=len(engines))
    replicas = pd.DataFrame(
        {
            "replica": names,
            "busy_s": [e.busy_s for e in engines],
            "iterations": [e.iterations for e in engines],
            "last_finish_s": [e.last_finish for e in engines],
            "peak_kv_tokens": [e.peak_blocks * e.limits.block_size_tokens for e in engines],
            "kv_capacity_tokens": [e.total_blocks * e.limits.block_size_tokens for e in engines],
            "requests": counts,
            "failed": [e.failed for e in engines],
            **(counters or {}),
        }
    )
    return Simulation(table, replicas, policy, dispatch, int(restarts.sum()), redone, getattr(dispatcher, "moves", 0))
