"""The makespan model of a plan, and its mixed-integer programs.

Data (from `optimizer.fleet.estimates`): request j has arrival a_j, work w_jk and latency l_jk on
replica kind k, and may run only on its eligible kinds E_j (the model it asks for, a KV
cache that holds it). Replica r has kind k(r); kind k has m_k replicas. Thresholds t in T
are release times (distinct arrivals, or a few quantiles of them).

Estimated makespan of an assignment (what every planner is scored by)::

    C = max_r max( max_{t in T} ( t + sum_{j on r, a_j >= t} w_{j k(r)} ) + D_{k(r)},   load after each release, then the drain
                   max_{j on r} ( a_j + l_{j k(r)} ) )                                      each request's own chain

with D_k the time a replica of kind k takes to drain its last full batch.

Per-request MIP (few requests)::

    min C
    s.t. sum_{r: k(r) in E_j} x_jr = 1                              for all j
         t + sum_{j: a_j >= t} w_{j k(r)} x_jr + D_{k(r)} <= C      for all r, t in T
         (a_j + l_{j k(r)}) x_jr <= C                               for all j, r
         LB <= C <= UB,  x_jr in {0, 1}

Class MIP (many requests): requests with the same eligibility, arrival bucket and works
(rounded to a 2% grid) form class c with N_c members, mean works W_ck and largest
latencies L_ck. It decides how many members of each class each replica kind runs::

    min C
    s.t. sum_{k in E_c} n_ck = N_c                                  for all c
         t_b + sum_{c: b(c) >= b} W_ck n_ck + m_k D_k <= m_k C      for all k, buckets b
         n_ck <= N_c y_ck,  (a_c + L_ck) y_ck <= C                  where a_c + L_ck > LB
         LB <= C <= UB,  n_ck integer, y_ck in {0, 1}

and each kind's requests are then spread over its identical replicas by LPT (or, with
arrivals, in arrival order to the replica that would finish first), which is within a
fraction of a percent of even when each replica gets many requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from optimizer.fleet.estimates import Estimates

#: Relative width of the work classes of the class MIP.
CLASS_GRID = 0.02
#: Release thresholds (arrival buckets) in the class MIP.
NUM_ARRIVAL_BUCKETS = 16


@dataclass
class LinearModel:
    """A backend-neutral mixed-integer linear program: minimise one variable, C.

    Rows are ``lo <= sum(coef * x[index]) <= hi``. Every variable is integer or binary
    except where `is_integer` is False.
    """

    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    is_integer: list[bool] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rows: list[tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    hint: list[float] = field(default_factory=list)
    objective: int = -1  # index of C

    def add_var(self, name: str, lower: float, upper: float, integer: bool, hint: float) -> int:
        self.names.append(name)
        self.lower.append(float(lower))
        self.upper.append(float(upper))
        self.is_integer.append(integer)
        self.hint.append(float(hint))
        return len(self.names) - 1

    def add_row(self, index, coef, lo: float, hi: float) -> None:
        self.rows.append((np.asarray(index, dtype=np.int64), np.asarray(coef, dtype=float), float(lo), float(hi)))

    @property
    def num_vars(self) -> int:
        return len(self.names)


def _release_thresholds(arrival_s: np.ndarray) -> np.ndarray:
    """Release times to constrain: every distinct arrival, or the earliest of each of
    NUM_ARRIVAL_BUCKETS quantile buckets when there are more (the exact makespan is still
    evaluated on every arrival)."""
    distinct = np.unique(arrival_s)
    if len(distinct) <= NUM_ARRIVAL_BUCKETS:
        return distinct
    edges = np.quantile(arrival_s, np.linspace(0, 1, NUM_ARRIVAL_BUCKETS + 1)[:-1])
    return np.unique(distinct[np.searchsorted(distinct, edges)])


def estimated_makespan(assignment: np.ndarray, estimates: Estimates) -> tuple[float, np.ndarray]:
    """C of the module docstring for an assignment (replica index per request), and each
    replica's estimated finish."""
    kinds = estimates.kind_of_replica[assignment]
    rows = np.arange(len(assignment))
    work = estimates.work_s[rows, kinds]
    chain = estimates.arrival_s + estimates.latency_s[rows, kinds]
    num_replicas = len(estimates.kind_of_replica)
    finish = np.zeros(num_replicas)
    np.maximum.at(finish, assignment, chain)
    # Per replica: max over its arrivals t of t + work arriving at or after t.
    order = np.lexsort((-estimates.arrival_s, assignment))  # by replica, latest arrival first
    replica, arrival, work = assignment[order], estimates.arrival_s[order], work[order]
    starts = np.r_[0, np.flatnonzero(np.diff(replica)) + 1]
    suffix = np.cumsum(work)
    suffix -= np.repeat(np.r_[0.0, suffix[starts[1:] - 1]], np.diff(np.r_[starts, len(order)]))
    np.maximum.at(finish, replica, arrival + suffix + estimates.drain_s[estimates.kind_of_replica[replica]])
    return float(finish.max()), finish


def per_request_model(estimates: Estimates, incumbent: np.ndarray, lower_bound: float, upper_bound: float) -> tuple[LinearModel, np.ndarray]:
    """The per-request MIP, hinted with `incumbent`; also returns x's variable index per (j, r)."""
    model = LinearModel()
    n, num_replicas = estimates.work_s.shape[0], len(estimates.kind_of_replica)
    # C = the estimated makespan, between the lower bound and the incumbent's value.
    model.objective = model.add_var("C", lower_bound, upper_bound, False, upper_bound)
    # x[j, r] = 1 if request j runs on replica r (only for eligible pairs).
    x = -np.ones((n, num_replicas), dtype=np.int64)
    eligible = estimates.eligible[:, estimates.kind_of_replica]
    for j, r in zip(*np.nonzero(eligible)):
        x[j, r] = model.add_var(f"x[{j},{r}]", 0, 1, True, float(incumbent[j] == r))
    # Each request runs on exactly one replica.
    for j in range(n):
        model.add_row(x[j][x[j] >= 0], np.ones(int((x[j] >= 0).sum())), 1, 1)
    # Load on each replica after each release time fits in the makespan.
    for r in range(num_replicas):
        k = estimates.kind_of_replica[r]
        on_r = np.flatnonzero(x[:, r] >= 0)
        for t in _release_thresholds(estimates.arrival_s[on_r]):
            later = on_r[estimates.arrival_s[on_r] >= t]
            model.add_row(np.r_[x[later, r], model.objective], np.r_[estimates.work_s[later, k], -1.0], -np.inf, -t - estimates.drain_s[k])
    # A request's own chain ends within the makespan on the replica it gets.
    chain = estimates.arrival_s[:, None] + estimates.latency_s[:, estimates.kind_of_replica]
    for j, r in zip(*np.nonzero((x >= 0) & (chain > lower_bound))):
        model.add_row([x[j, r], model.objective], [chain[j, r], -1.0], -np.inf, 0.0)
    return model, x


@dataclass(frozen=True)
class Classes:
    """Requests grouped into classes of near-equal cost (see the module docstring)."""

    of_request: np.ndarray  # class of each request
    count: np.ndarray  # N_c
    work_s: np.ndarray  # W_ck, mean work (inf where not eligible)
    latency_s: np.ndarray  # L_ck, largest latency
    arrival_s: np.ndarray  # a_c, earliest arrival
    bucket: np.ndarray  # arrival bucket of each class
    thresholds: np.ndarray  # t_b of each bucket


def make_classes(estimates: Estimates) -> Classes:
    arrival = estimates.arrival_s
    if np.all(arrival == arrival[0]):
        bucket_of = np.zeros(len(arrival), dtype=np.int64)
        thresholds = np.array([arrival[0]])
    else:
        edges = np.unique(np.quantile(arrival, np.linspace(0, 1, NUM_ARRIVAL_BUCKETS + 1)[1:-1]))
        bucket_of = np.searchsorted(edges, arrival, side="right")
        thresholds = np.array([arrival[bucket_of == b].min() if (bucket_of == b).any() else np.inf for b in range(len(edges) + 1)])
    work = np.where(estimates.eligible, estimates.work_s, np.inf)
    grid = np.where(np.isfinite(work), np.round(np.log(np.maximum(work, 1e-12)) / np.log1p(CLASS_GRID)), -(2**62))
    key = np.column_stack([bucket_of, grid.astype(np.int64)])
    _, of_request, count = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    of_request = of_request.ravel()
    num_classes = len(count)
    sums = np.zeros((num_classes, work.shape[1]))
    np.add.at(sums, of_request, np.where(np.isfinite(work), work, 0.0))
    # Eligibility is part of the key, so any member tells the class's eligibility.
    first_member = np.zeros(num_classes, dtype=np.int64)
    first_member[of_request[::-1]] = np.arange(len(of_request))[::-1]
    mean_work = np.where(estimates.eligible[first_member], sums / count[:, None], np.inf)
    latency = np.full((num_classes, work.shape[1]), -np.inf)
    np.maximum.at(latency, of_request, estimates.latency_s)
    earliest = np.full(num_classes, np.inf)
    np.minimum.at(earliest, of_request, arrival)
    bucket = np.zeros(num_classes, dtype=np.int64)
    bucket[of_request] = bucket_of
    return Classes(of_request, count, mean_work, latency, earliest, bucket, thresholds)


def class_model(
    estimates: Estimates, classes: Classes, incumbent: np.ndarray, lower_bound: float, upper_bound: float
) -> tuple[LinearModel, np.ndarray]:
    """The class MIP, hinted with the incumbent's counts; also returns n's index per (c, k)."""
    model = LinearModel()
    num_classes, num_kinds = classes.work_s.shape
    m = estimates.num_replicas_of_kind
    hint_counts = np.zeros((num_classes, num_kinds))
    np.add.at(hint_counts, (classes.of_request, estimates.kind_of_replica[incumbent]), 1)
    # C = the estimated makespan, between the lower bound and the incumbent's value.
    model.objective = model.add_var("C", lower_bound, upper_bound, False, upper_bound)
    # n[c, k] = how many requests of class c run on replicas of kind k.
    n = -np.ones((num_classes, num_kinds), dtype=np.int64)
    for c, k in zip(*np.nonzero(np.isfinite(classes.work_s))):
        n[c, k] = model.add_var(f"n[{c},{k}]", 0, classes.count[c], True, hint_counts[c, k])
    # Every request of a class runs somewhere.
    for c in range(num_classes):
        model.add_row(n[c][n[c] >= 0], np.ones(int((n[c] >= 0).sum())), classes.count[c], classes.count[c])
    # The work of each kind after each release fits on its replicas within the makespan.
    for k in range(num_kinds):
        for b, t in enumerate(classes.thresholds):
            members = np.flatnonzero((classes.bucket >= b) & (n[:, k] >= 0))
            if np.isfinite(t) and len(members):
                model.add_row(np.r_[n[members, k], model.objective], np.r_[classes.work_s[members, k], -float(m[k])], -np.inf, -float(m[k]) * (t + estimates.drain_s[k]))
    # A class's longest chain ends within the makespan on any kind it uses.
    chain = classes.arrival_s[:, None] + classes.latency_s
    for c, k in zip(*np.nonzero((n >= 0) & (chain > lower_bound))):
        y = model.add_var(f"y[{c},{k}]", 0, 1, True, float(hint_counts[c, k] > 0))
        model.add_row([n[c, k], y], [1.0, -float(classes.count[c])], -np.inf, 0.0)
        model.add_row([y, model.objective], [float(chain[c, k]), -1.0], -np.inf, 0.0)
    return model, n
