"""Per-request time and memory estimates on each replica kind, from the performance profiles.

Notation for request j (prompt p, output o tokens) on replica kind k, with the profile's forms
(`optimizer.fleet.profile`) and the token costs of `optimizer.fleet.token_costs` (fix(B) is a
decode step of B sequences without its context term d2 C):

- The first output token comes from the prefill pass; the other o - 1 each take one decode
  iteration, with the sequence's context growing from p + 1 to p + o - 1 tokens.
- Per-sequence share of an iteration at batch B: s(B) = fix(B) / B, plus d2 per token of the
  sequence's own context. Summing the shares of a batch gives decode(B, C) exactly.
- Best sustainable batch B*_k: the batch the replica's backlog sustains, at most
  B_cap = min(max_num_seqs, floor(kv_capacity / c_bar), argmin_B s(B), what prefill lets
  through; `optimizer.fleet.concurrency`): n / m for an
  offline batch; with arrivals, from the fluid backlog model of `optimizer.fleet.concurrency`
  (queueing included, so overload fills the batch up to B_cap). c_bar = sum_j (o_j - 1)
  (p_j + o_j / 2) / sum_j (o_j - 1) is the context of a decoding sequence averaged over
  decode steps, for the trace at hand.
- Prefill work per prompt token c_plan: prompts are chunked and, where there are decodes
  to ride on, ride on decode steps of B* sequences, each chunk costing its marginal time
  (engines that mix, as the default Sarathi policy does; `token_costs.planning_chunk_price_ms`).
  A prompt also costs a4 and its attention a3 p^2.
- work_jk = a4 + c_plan p + a3 p^2 + (o - 1) s(B*) + d2 ((o - 1) p + (o - 1) o / 2): the
  replica time the request takes when the replica runs full batches (what planners balance).
  (A chunking engine cuts a prompt into about 1 + (p - 1) / (chunk - B*) pieces, each paying
  a4 in the simulator; charging that made prompt-heavy estimates closer but the bundled
  ShareGPT batch's plan 0.7% longer in simulation, so a4 is charged once.)
- latency_jk = prefill(p) + (o - 1) * decode(B*, B* c_bar): the time it holds a batch slot
  (its first token comes from the prefill pass, each other token takes one full iteration).
- kv_tokens_jk = p + o rounded up to whole blocks: its KV-cache footprint when it finishes.
- drain_k = o_bar x mean_{b <= B*} (fix(b) - b s(B*)): when a replica's queue empties, its
  batch shrinks from B* to 0 over about o_bar (mean decode steps) iterations, each costing
  more than the shares charge.

Lower-bound counterparts, valid for any schedule under this model (all coefficients are
non-negative, so dropping terms only lowers a time):

- min_work_jk = a4 + alpha p + a3 p^2 + beta (o - 1) + d2 (own context), with (alpha, beta)
  the lower-bound prices of `optimizer.fleet.token_costs` for the trace's mix of prompt
  tokens and decode steps: every iteration costs at least alpha x its prefill tokens + beta x
  its decodes + its attention, chunk and context terms.
- min_latency_jk = (a4 + alpha_max p + a3 p^2) + (o - 1) fix(1) + d2 (own context): no
  chunk is cheaper per token than alpha_max (the least lin(x) / x), no iteration that
  carries a decode is faster than a decode of one (a mixed one costs at least its decode part).

Assumptions: an iteration's time is the profile's mixed form (the simulator's model),
output lengths are the real ones where known and the predicted ones otherwise, and a
request runs on one replica from start to end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.common.words import counted
from optimizer.fleet import concurrency, token_costs
from optimizer.fleet.cluster import Cluster, Replica
from optimizer.fleet.profile import Profile
from optimizer.fleet.sources import profile_for

MS = 1e-3


@dataclass(frozen=True)
class Estimates:
    """Per-request estimates; arrays are (requests x replica kinds) unless noted."""

    kinds: tuple[str, ...]
    #: Replicas of each kind, by index into the cluster (one array per kind).
    replicas_of_kind: tuple[np.ndarray, ...]
    #: Kind of each replica, by index into `kinds` (one entry per replica).
    kind_of_replica: np.ndarray
    arrival_s: np.ndarray  # (requests,)
    #: The prefill part of work_s (chunked prefill).
    prefill_s: np.ndarray
    work_s: np.ndarray
    latency_s: np.ndarray
    min_work_s: np.ndarray
    min_latency_s: np.ndarray
    kv_tokens: np.ndarray
    #: True where the kind serves the request's model and its KV cache holds the request.
    eligible: np.ndarray
    #: Best sustainable batch B*_k per kind.
    batch_size: np.ndarray  # (kinds,)
    #: Extra time a replica of each kind takes to drain its last full batch (kinds,).
    drain_s: np.ndarray = None  # type: ignore[assignment]
    #: Per kind: s(B*), a decode step's share of the fixed iteration cost, and d2, the
    #: cost per token of a sequence's own context (seconds), to price other lengths.
    decode_share_s: np.ndarray = None  # type: ignore[assignment]
    context_s_per_token: np.ndarray = None  # type: ignore[assignment]
    #: Per kind: B_cap, the most sequences the engine runs at once here (engine, KV and
    #: prefill limits, `optimizer.fleet.concurrency`); B* <= B_cap.
    batch_cap: np.ndarray = None  # type: ignore[assignment]

    def work_for(self, rows: np.ndarray, kind: int, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """work_s of requests `rows` on `kind` had their outputs been `output_tokens` long
        (the module docstring's formula: prefill + sum over decode steps i of s(B*) + d2 (p + i))."""
        share, context = self.decode_share_s[kind], self.context_s_per_token[kind]
        steps = np.maximum(np.asarray(output_tokens, dtype=float) - 1.0, 0.0)
        return self.prefill_s[rows, kind] + steps * (share + context * prompt_tokens) + context * steps * (steps + 1) / 2

    @property
    def num_replicas_of_kind(self) -> np.ndarray:
        return np.array([len(r) for r in self.replicas_of_kind])


def planning_lengths(requests: pd.DataFrame) -> np.ndarray:
    """Output lengths a plan may use: the predictions where the trace has them (what is
    known before a request runs), else the real ones."""
    return _lengths(requests, requests["predicted_output_tokens"].fillna(requests["output_tokens"]))


def hindsight_lengths(requests: pd.DataFrame) -> np.ndarray:
    """Output lengths in hindsight: the real ones where known, else the predictions. Lower
    bounds use these, so predictions never flatter a plan."""
    return _lengths(requests, requests["output_tokens"].fillna(requests["predicted_output_tokens"]))


def _lengths(requests: pd.DataFrame, output: pd.Series) -> np.ndarray:
    unknown = output.isna().to_numpy()
    if unknown.any():
        request_id = requests["request_id"].iloc[int(np.argmax(unknown))]
        raise OptimizerError(
            f"Request {request_id!r} has neither output_tokens nor predicted_output_tokens; "
            f"planning needs one of them ({counted(int(unknown.sum()), 'request')} lack{'s' if unknown.sum() == 1 else ''} both)."
        )
    return output.to_numpy(dtype=np.int64)


def estimate(
    requests: pd.DataFrame,
    cluster: Cluster,
    output_tokens: np.ndarray,
    *,
    profiles: dict[tuple[str, str, int], Profile] | None = None,
) -> Estimates:
    """Estimates of every request on every replica kind of the cluster.

    Raises:
        OptimizerError: a model no replica serves, a request no replica's KV cache holds,
            or a replica kind without a profile.
    """
    kinds = tuple(cluster.kinds)
    first_of_kind = cluster.first_of_each_kind
    kind_of_replica = np.array([kinds.index(r.kind) for r in cluster.replicas])
    prompt = requests["prompt_tokens"].to_numpy(dtype=float)
    output = np.asarray(output_tokens, dtype=float)
    models = requests["model"].to_numpy(dtype=object)
    n, num_kinds = len(prompt), len(kinds)

    arrival = requests["arrival_s"].to_numpy(dtype=float)
    num_replicas = len(cluster)
    steps = output - 1  # decode iterations of each request
    # Context of a decoding sequence averaged over decode steps, over the trace.
    mean_context = float(np.sum(steps * (prompt + output / 2)) / max(np.sum(steps), 1.0))
    # d2 times the context summed over a request's decode steps (p + 1 .. p + o - 1).
    own_context_ms = lambda d2: d2 * (steps * prompt + steps * output / 2)  # noqa: E731

    # The longest prefill an unchunked policy may run at once: max_num_seqs of the longest prompts.
    longest_prefill = int(np.sort(prompt)[::-1][: max(r.limits.max_num_seqs for r in first_of_kind)].sum()) if n else 0
    shape = (n, num_kinds)
    prefill, work, latency, min_work, min_latency = (np.empty(shape) for _ in range(5))
    kv_tokens = np.empty(shape, dtype=np.int64)
    eligible = np.empty(shape, dtype=bool)
    batch_size = np.empty(num_kinds)
    drain = np.zeros(num_kinds)
    decode_share, context_per_token = np.zeros(num_kinds), np.zeros(num_kinds)
    # Per kind: the engine and KV limit B_cap (also the profile's best batch), and the share
    # of the arrivals a replica of the kind gets (its throughput at B_cap, `concurrency`).
    caps, throughput = [], []
    for replica in first_of_kind:
        profile = profile_for(replica, profiles)
        batches = np.arange(1, replica.limits.max_num_seqs + 1)
        shares_ms = np.asarray(profile.decode_fixed_ms(batches.astype(float))) / batches
        chunk = best_chunk_tokens(profile, replica.limits.max_num_batched_tokens)
        cap = concurrency.batch_cap(replica.limits.max_num_seqs, replica.kv_capacity_tokens, mean_context, int(batches[np.argmin(shares_ms)]),
                                    chunk, float(np.mean(prompt)) if n else 0.0, float(np.mean(steps)) if n else 0.0)
        caps.append(cap)
        throughput.append(concurrency.replica_throughput(_riding_prefill_s(profile, replica, prompt, steps, cap), steps, mean_context, profile, cap))
    fleet_throughput = sum(throughput[kinds.index(r.kind)] for r in cluster.replicas)
    offline = n == 0 or bool(np.all(arrival == arrival[0]))
    for k, replica in enumerate(first_of_kind):
        profile = profile_for(replica, profiles)
        limits = replica.limits
        d2 = profile.decode_ms_per_context_token
        capacity = replica.kv_capacity_tokens
        batches = np.arange(1, limits.max_num_seqs + 1)
        shares_ms = np.asarray(profile.decode_fixed_ms(batches.astype(float))) / batches
        prefill_ms = profile.prefill_time_ms(prompt)
        # The batch the replica's backlog sustains (the fluid model of `concurrency`).
        best = concurrency.fluid_batch(arrival, _riding_prefill_s(profile, replica, prompt, steps, caps[k]), steps,
                                       mean_context, profile, caps[k],
                                       1 / num_replicas if offline else throughput[k] / fleet_throughput)
        batch_size[k] = best
        # Draining: the batch shrinks from B* to 0 over the last requests' decode steps.
        drain[k] = float(np.mean(steps)) * token_costs.drain_ms_per_step(profile, best) * MS
        share_ms = float(shares_ms[best - 1])
        decode_share[k], context_per_token[k] = share_ms * MS, d2 * MS
        full_iteration_ms = profile.decode_time_ms(best, best * mean_context)
        budget = limits.max_num_batched_tokens
        own_prefill_ms = own_once_ms = profile.prefill_ms_per_prompt + profile.prefill_attention_ms_per_token_sq * prompt**2
        chunk = best_chunk_tokens(profile, budget)
        riding_ms = token_costs.planning_chunk_price_ms(profile, chunk, best, float(prompt.sum()), float(steps.sum()))
        alpha, beta = token_costs.lower_bound_prices(profile, budget, limits.max_num_seqs, longest_prefill,
                                                     float(prompt.sum()), float(steps.sum()))
        alpha_max = token_costs.least_prefill_price_ms(profile, budget, longest_prefill)

        prefill[:, k] = (own_prefill_ms + riding_ms * prompt) * MS
        work[:, k] = (own_prefill_ms + riding_ms * prompt + steps * share_ms + own_context_ms(d2)) * MS
        latency[:, k] = (prefill_ms + steps * full_iteration_ms) * MS
        min_work[:, k] = (own_once_ms + alpha * prompt + steps * beta + own_context_ms(d2)) * MS
        min_latency[:, k] = (own_once_ms + alpha_max * prompt + steps * float(profile.decode_fixed_ms(1.0)) + own_context_ms(d2)) * MS
        block = limits.block_size_tokens
        kv_tokens[:, k] = (np.ceil((prompt + output) / block) * block).astype(np.int64)
        eligible[:, k] = ((models == "") | (models == replica.model)) & (kv_tokens[:, k] <= capacity)

    _check_every_request_fits(requests, cluster, first_of_kind, eligible, kv_tokens, models)
    return Estimates(
        kinds=kinds,
        replicas_of_kind=tuple(np.flatnonzero(kind_of_replica == k) for k in range(num_kinds)),
        kind_of_replica=kind_of_replica,
        arrival_s=requests["arrival_s"].to_numpy(dtype=float),
        prefill_s=prefill,
        work_s=work,
        latency_s=latency,
        min_work_s=min_work,
        min_latency_s=min_latency,
        kv_tokens=kv_tokens,
        eligible=eligible,
        batch_size=batch_size,
        drain_s=drain,
        decode_share_s=decode_share,
        context_s_per_token=context_per_token,
        batch_cap=np.asarray(caps, dtype=float),
    )


def _riding_prefill_s(profile: Profile, replica: Replica, prompt: np.ndarray, steps: np.ndarray, batch: int) -> np.ndarray:
    """Each prompt's prefill work (seconds) when its chunks ride on decode steps of `batch` sequences."""
    budget = replica.limits.max_num_batched_tokens
    riding_ms = token_costs.planning_chunk_price_ms(profile, best_chunk_tokens(profile, budget), batch, float(prompt.sum()), float(steps.sum()))
    own_ms = profile.prefill_ms_per_prompt + profile.prefill_attention_ms_per_token_sq * prompt**2
    return (own_ms + riding_ms * prompt) * MS


def best_chunk_tokens(profile: Profile, budget_tokens: int) -> int:
    """Prefill tokens per iteration that cost least per token, at most the budget.

    The per-token cost lin(T) / T falls with T up to the kink T_k and is monotone beyond it,
    so the least is at min(T_k, budget) or at the budget.
    """
    sizes = sorted({int(min(profile.prefill_kink_tokens, budget_tokens)), int(budget_tokens)})
    return min(sizes, key=lambda size: (float(token_costs.weight_pass_ms(profile, size)) / size, size))


def _check_every_request_fits(
    requests: pd.DataFrame,
    cluster: Cluster,
    kinds: list[Replica],
    eligible: np.ndarray,
    kv_tokens: np.ndarray,
    models: np.ndarray,
) -> None:
    stranded = ~eligible.any(axis=1)
    if not stranded.any():
        return
    j = int(np.argmax(stranded))
    request_id = requests["request_id"].iloc[j]
    count = int(stranded.sum())
    serving = [k for k, r in enumerate(kinds) if models[j] in ("", r.model)]
    if not serving:
        unserved = int((models == models[j]).sum())
        raise OptimizerError(
            f"{counted(unserved, 'request')} (first {request_id!r}) ask{'s' if unserved == 1 else ''} for model {models[j]!r}, "
            f"which no replica serves (the cluster serves {', '.join(cluster.models)}); serve them with a model the "
            f"cluster has (--model {cluster.models[0]}) or add replicas of {models[j]!r} (--replicas {models[j]}@GPU-tpN:COUNT)."
        )
    largest = max(serving, key=lambda k: kinds[k].kv_capacity_tokens)
    raise OptimizerError(
        f"Request {request_id!r} needs {kv_tokens[j, largest]:,} tokens of KV cache (prompt plus output), more than "
        f"the largest capacity of a replica serving {kinds[largest].model}, {kinds[largest].kv_capacity_tokens:,} tokens "
        f"on {kinds[largest].kind} ({counted(count, 'request')} cannot fit)."
    )
