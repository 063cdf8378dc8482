"""Lower bounds on the makespan: no plan of these requests on this cluster finishes sooner.

With the per-request lower-bound quantities of `optimizer.fleet.estimates` (w_jk = min_work,
l_jk = min_latency of request j on replica kind k, a_j its arrival, m_k replicas of kind k,
E_j the kinds eligible for j):

- work:  max over y >= 0 with sum_k m_k y_k = 1 of  sum_j min_{k in E_j} y_k w_jk.
  This is the dual of the fractional assignment LP  min C  s.t.  sum_j x_jk w_jk <= m_k C,
  sum_{k in E_j} x_jk = 1, x >= 0,  so it equals the LP bound on mixed fleets and
  total work / m on identical replicas. With arrivals, also
  max_t ( t + sum_{j: a_j >= t} min_k w_jk / m ), m replicas in all: work that arrives
  at t or later cannot start before t.
- chain:  max_j ( a_j + min_{k in E_j} l_jk ): a request's tokens come one after another.
- P||Cmax:  with p_j = min_{k in E_j} w_jk sorted so that p_1 >= p_2 >= ..., on m
  replicas: max(p_1, p_m + p_{m+1}, max_q sum_{i=0..q} p_{qm+1-i}); among the qm+1
  longest requests some replica runs q+1 of them. Computed over all requests and
  replicas, and over each model's requests and the replicas serving that model.

With a prefix cache, a request's least work and latency shrink by the prompt blocks it may
find cached, and the blocks it shares are jobs of their own, computed at least once
(`optimizer.planning.reuse` proves it): the work bound then runs on w' plus those jobs (in
the fractional part; the release-time form leaves them out, which only lowers it), the
chain bound on l', and the P||Cmax bound on w'.

`lower_bounds` reports each bound and which one binds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from ortools.linear_solver import pywraplp

from optimizer.common.errors import OptimizerError
from optimizer.fleet.cluster import Cluster
from optimizer.fleet.estimates import Estimates, estimate, hindsight_lengths
from optimizer.fleet.profile import Profile
from optimizer.planning.reuse import Reuse, reuse_work
from optimizer.traces.prefixes import has_prefixes

#: Beyond this many distinct requests, the LP that finds the prices y is solved on works
#: rounded down to a 0.5% geometric grid, merged into classes. Any y >= 0 with
#: sum_k m_k y_k = 1 gives a valid bound, and the bound is evaluated on the exact works.
MAX_LP_ROWS = 2_000
_GRID = np.log1p(5e-3)


@dataclass(frozen=True)
class Bounds:
    """Lower bounds on the makespan in seconds, and which one binds."""

    work_s: float
    chain_s: float
    pcmax_s: float

    @property
    def best_s(self) -> float:
        return max(self.work_s, self.chain_s, self.pcmax_s)

    @property
    def binding(self) -> str:
        return max((("work", self.work_s), ("chain", self.chain_s), ("pcmax", self.pcmax_s)), key=lambda item: item[1])[0]

    def as_dict(self) -> dict[str, float | str]:
        return {"work_s": self.work_s, "chain_s": self.chain_s, "pcmax_s": self.pcmax_s, "lower_bound_s": self.best_s, "binding": self.binding}


def trace_bounds(
    requests: pd.DataFrame, cluster: Cluster, *, profiles: dict[tuple[str, str, int], Profile] | None = None,
    prefix_cache: bool = True,
) -> tuple[Bounds, Estimates]:
    """Lower bounds of a request table on a cluster, with the estimates they come from; with
    `prefix_cache` and a trace that declares shared prefixes, the bounds with reuse, and
    estimates whose least works and latencies are those after reuse (so that the work
    utilization of a simulation with a prefix cache, which sums them, stays <= 100%)."""
    lengths = hindsight_lengths(requests)
    estimates = estimate(requests, cluster, lengths, profiles=profiles)
    if not (prefix_cache and has_prefixes(requests)):
        return lower_bounds(estimates), estimates
    reuse = reuse_work(requests, cluster, estimates, lengths, profiles=profiles)
    return lower_bounds(estimates, reuse), dataclasses.replace(estimates, min_work_s=reuse.min_work_s, min_latency_s=reuse.min_latency_s)


def lower_bounds(estimates: Estimates, reuse: Reuse | None = None) -> Bounds:
    """All lower bounds of the module docstring (with reuse when `reuse` is given)."""
    if reuse is not None:
        shared = reuse.shared_work_s
        estimates = dataclasses.replace(estimates, min_work_s=reuse.min_work_s, min_latency_s=reuse.min_latency_s)
        return Bounds(work_s=work_bound(estimates, shared), chain_s=chain_bound(estimates), pcmax_s=pcmax_bound(estimates))
    return Bounds(work_s=work_bound(estimates), chain_s=chain_bound(estimates), pcmax_s=pcmax_bound(estimates))


def _masked(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    return np.where(eligible, values, np.inf)


def chain_bound(estimates: Estimates) -> float:
    return float(np.max(estimates.arrival_s + _masked(estimates.min_latency_s, estimates.eligible).min(axis=1)))


def work_bound(estimates: Estimates, shared_work_s: np.ndarray | None = None) -> float:
    """The fractional-assignment bound, and its release-time form (see the module docstring);
    `shared_work_s` (jobs x kinds, inf where a job cannot run) are more jobs without arrivals."""
    work = _masked(estimates.min_work_s, estimates.eligible)
    jobs = work if shared_work_s is None or not len(shared_work_s) else np.vstack([work, shared_work_s])
    prices = _lp_prices(jobs, estimates.num_replicas_of_kind)
    # Priced on eligible kinds only (0 x inf would be undefined where a price is 0).
    priced = np.where(np.isfinite(jobs), prices[None, :] * np.where(np.isfinite(jobs), jobs, 0.0), np.inf)
    fractional = float(priced.min(axis=1).sum())
    # max over t = a_j of t + (fastest work of requests arriving at or after t) / m.
    fastest = work.min(axis=1) / len(estimates.kind_of_replica)
    order = np.argsort(estimates.arrival_s, kind="stable")
    suffix = np.cumsum(fastest[order][::-1])[::-1]
    return max(fractional, float(np.max(estimates.arrival_s[order] + suffix)))


def _lp_prices(work: np.ndarray, num_replicas: np.ndarray) -> np.ndarray:
    """Optimal y of max sum_j min_k y_k w_jk s.t. sum_k m_k y_k = 1 (GLOP)."""
    num_kinds = work.shape[1]
    if num_kinds == 1:
        return np.array([1.0 / num_replicas[0]])
    rows, counts = np.unique(work, axis=0, return_counts=True)
    if len(rows) > MAX_LP_ROWS:
        grid = np.where(np.isfinite(work), np.floor(np.log(np.maximum(work, 1e-12)) / _GRID), np.inf)
        rows, counts = np.unique(grid, axis=0, return_counts=True)
        rows = np.where(np.isfinite(rows), np.exp(rows * _GRID), np.inf)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    # y[k] = price of one second of replica time on kind k, scaled so the fleet costs 1.
    y = [solver.NumVar(0.0, solver.infinity(), f"y[{k}]") for k in range(num_kinds)]
    # z[c] = what one request of class c is worth at these prices: its cheapest eligible kind.
    z = [solver.NumVar(0.0, solver.infinity(), f"z[{c}]") for c in range(len(rows))]
    for c, row in enumerate(rows):
        for k in np.flatnonzero(np.isfinite(row)):
            solver.Add(z[c] <= float(row[k]) * y[k])
    # The fleet's capacity is priced at one.
    solver.Add(sum(float(m) * y[k] for k, m in enumerate(num_replicas)) == 1.0)
    solver.Maximize(sum(float(n) * z[c] for c, n in enumerate(counts)))
    status = solver.Solve()
    if status != pywraplp.Solver.OPTIMAL:
        raise OptimizerError(f"The work-bound LP did not solve (GLOP status {status}).")
    return np.array([v.solution_value() for v in y])


def pcmax_bound(estimates: Estimates) -> float:
    """Classical P||Cmax bounds on the fastest eligible work, overall and per model group."""
    fastest = _masked(estimates.min_work_s, estimates.eligible).min(axis=1)
    bound = _pcmax(fastest, len(estimates.kind_of_replica))
    # Requests only some kinds can run (another model, or too big a KV footprint) form
    # groups confined to those kinds' replicas.
    groups, members = np.unique(estimates.eligible, axis=0, return_inverse=True)
    for g, row in enumerate(groups):
        if not row.all():
            replicas = int(estimates.num_replicas_of_kind[row].sum())
            bound = max(bound, _pcmax(fastest[members.ravel() == g], replicas))
    return bound


def _pcmax(times: np.ndarray, m: int) -> float:
    p = np.sort(times)[::-1]
    n = len(p)
    bound = float(p[0]) if n else 0.0
    # sum_{i=0..q} p_{qm+1-i} (1-based): the q+1 shortest of the qm+1 longest.
    prefix = np.concatenate([[0.0], np.cumsum(p)])
    for q in range(1, (n - 1) // m + 1):
        top = q * m + 1
        bound = max(bound, float(prefix[top] - prefix[top - q - 1]))
    return bound
