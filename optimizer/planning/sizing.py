"""Fleet sizing: how many replicas of each candidate kind to rent so a batch ends by a deadline.

Data: the classes of `optimizer.planning.formulation` (class c has N_c requests, mean work
W_ck and longest latency L_ck on kind k, earliest arrival a_c, arrival bucket b(c) with
release t_b), each kind's drain D_k, and per candidate kind k a price p_k per replica-hour
(GPU price x tp), at most A_k and at least A'_k replicas. Deadline T.

Variables: z_k = replicas of kind k rented (integer); n_ck = requests of class c served by
kind k (integer, only where kind k serves c and a_c + L_ck <= T: a request whose chain
alone, its prefill and then its tokens one after another, misses the deadline on k never
goes there). The model::

    min  cost
    s.t. sum_k n_ck = N_c                                           for all c
         sum_{c: b(c) >= b} W_ck n_ck <= (T - t_b - D_k) z_k        for all k, buckets b
         A'_k <= z_k <= A_k,  n_ck >= 0 integer

    window billing:      cost = sum_k p_k z_k T / 3600             (every replica rented for the window)
    until-done billing:  cost = sum_k p_k (sum_c W_ck n_ck + D_k z_k) / 3600
                                                                   (each replica billed until it is done:
                                                                    its work plus its drain)

The work rows are the planner's class-MIP rows with its makespan C fixed at T and
multiplied by z_k, so they are linear; both billings are linear. The work rows are kept
in integer ticks of T / 10^6 seconds, works rounded up and capacities down (so a fleet the
model accepts is one the planner's model accepts, and CP-SAT can read the rows).

Estimates depend on the fleet's size through the batch a replica can fill (an offline
batch of n requests on M replicas keeps n / M at once), so `size_fleet` estimates with M
= the number of kinds first, then again with the M it chose, until the counts repeat.

`lower_bound_usd` is the LP relaxation of the same model (integrality dropped), a bound
on the cost of any fleet the model accepts at this deadline. Its solution, rounded (each
class's members by largest remainder, then each kind's count up to what holds its work),
is a whole fleet the model accepts: the MIP starts from it as a hint, and it is kept if the
MIP finds nothing cheaper within its time limit (on 100k requests the MIP has ~10^5 integer
variables and SCIP may find no fleet of its own).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.fleet.estimates import Estimates, estimate, planning_lengths
from optimizer.planning.backends import available_backends, lp_solution, solve_model
from optimizer.planning.candidates import Candidate, fleet_cluster
from optimizer.planning.fleet_rounding import TICK, fewer_replicas, fleet_hint, rounded_fleet
from optimizer.planning.formulation import Classes, LinearModel, make_classes

BILLINGS = ("window", "until-done")
#: At most this many re-estimates after the fleet's size changed.
MAX_ESTIMATE_ROUNDS = 3
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Sizing:
    """A fleet the model accepts at `deadline_s`, its cost and bounds (USD)."""

    counts: np.ndarray  # replicas of each candidate
    cost_usd: float
    lower_bound_usd: float  # LP relaxation
    proven_bound_usd: float  # the solver's own bound (>= the LP bound when it proves one)
    estimated_makespan_s: float
    deadline_s: float
    billing: str
    status: str
    solve_time_s: float
    #: Estimated work (replica-seconds) each kind runs, and its drain per replica.
    work_s: np.ndarray
    drain_s: np.ndarray

    @property
    def gap_to_lp(self) -> float:
        return self.cost_usd / self.lower_bound_usd - 1 if self.lower_bound_usd > 0 else 0.0


class Unreachable(OptimizerError):
    """No fleet of the candidates meets the deadline in the model."""


#: Backends that solve the sizing model: MIP solvers. (CP-SAT found no fleet in 20 s on the
#: ShareGPT batch without a feasible start, where SCIP proves the optimum in 0.2 s.)
MIP_BACKENDS = ("scip", "cbc")


def sizing_solvers() -> list[str]:
    """MIP backends available here, the default first."""
    return [name for name in MIP_BACKENDS if name in available_backends()]


def check_options(billing: str, solver: str, deadline_s: float | None = None) -> None:
    if billing not in BILLINGS:
        raise OptimizerError(f"Unknown billing {billing!r}; choose one of: {', '.join(BILLINGS)}.")
    valid = sizing_solvers()
    if solver not in valid:
        raise OptimizerError(f"Unknown solver {solver!r} for fleet sizing; choose one of: {', '.join(valid)}.")
    if deadline_s is not None and not deadline_s > 0:
        raise OptimizerError(f"The deadline must be greater than 0 seconds, got {deadline_s:g}.")


def fleet_estimates(
    requests: pd.DataFrame, candidates: list[Candidate], num_replicas: int, output_tokens: np.ndarray, profiles=None
) -> Estimates:
    """Estimates of every request on every candidate kind, for a fleet of `num_replicas` in all
    (the kinds' order is the candidates' order)."""
    counts = np.ones(len(candidates), dtype=np.int64)
    counts[0] += max(num_replicas - len(candidates), 0)  # only the fleet's size matters here
    return estimate(requests, fleet_cluster(candidates, counts), output_tokens, profiles=profiles)


def billing_rates(candidates: list[Candidate]) -> np.ndarray:
    """USD per replica-second of each candidate."""
    return np.array([c.price_per_replica_hour for c in candidates]) / SECONDS_PER_HOUR


def sizing_model(
    estimates: Estimates, classes: Classes, candidates: list[Candidate], deadline_s: float, billing: str,
    available: np.ndarray, minimum: np.ndarray,
) -> tuple[LinearModel, np.ndarray, np.ndarray]:
    """The model of the module docstring; returns it with z's index per kind and n's per (c, k)."""
    model = LinearModel()
    num_classes, num_kinds = classes.work_s.shape
    rate = billing_rates(candidates)
    drain = estimates.drain_s
    tick = deadline_s * TICK
    finite_work = np.where(np.isfinite(classes.work_s), classes.work_s, 0.0)
    if billing == "window":
        upper = float(np.sum(rate * available) * deadline_s)
    else:
        upper = float(np.sum(classes.count * finite_work.max(axis=1)) * rate.max() + np.sum(rate * drain * available))
    # cost = what the fleet is billed (USD), the objective.
    model.objective = model.add_var("cost", 0.0, max(upper, 1e-9) * 1.01, False, upper)
    # z[k] = replicas of kind k rented.
    z = np.array([model.add_var(f"z[{k}]", minimum[k], available[k], True, available[k]) for k in range(num_kinds)])
    # n[c, k] = requests of class c served by kind k: only where k serves c and the class's
    # longest chain ends by the deadline on k.
    allowed = np.isfinite(classes.work_s) & (classes.arrival_s[:, None] + classes.latency_s <= deadline_s) & (available > 0)[None, :]
    n = -np.ones((num_classes, num_kinds), dtype=np.int64)
    for c, k in zip(*np.nonzero(allowed)):
        n[c, k] = model.add_var(f"n[{c},{k}]", 0, classes.count[c], True, 0)
    # Every request of a class is served.
    for c in range(num_classes):
        model.add_row(n[c][n[c] >= 0], np.ones(int((n[c] >= 0).sum())), classes.count[c], classes.count[c])
    # Each kind's work released at or after t_b, plus its drain, fits in its replicas by T
    # (integer ticks: works rounded up, capacity rounded down).
    for k in range(num_kinds):
        for b, t in enumerate(classes.thresholds):
            members = np.flatnonzero((classes.bucket >= b) & (n[:, k] >= 0))
            if np.isfinite(t) and len(members):
                ticks = np.ceil(classes.work_s[members, k] / tick)
                capacity = math.floor((deadline_s - t - drain[k]) / tick)
                model.add_row(np.r_[n[members, k], z[k]], np.r_[ticks, -float(capacity)], -np.inf, 0.0)
    # The bill.
    if billing == "window":
        model.add_row(np.r_[model.objective, z], np.r_[1.0, -rate * deadline_s], 0.0, 0.0)
    else:
        used = np.flatnonzero(n.ravel() >= 0)
        c_of, k_of = np.unravel_index(used, n.shape)
        model.add_row(np.r_[model.objective, z, n.ravel()[used]],
                      np.r_[1.0, -rate * drain, -rate[k_of] * classes.work_s[c_of, k_of]], 0.0, 0.0)
    return model, z, n


def model_makespan(counts: np.ndarray, members: np.ndarray, classes: Classes, estimates: Estimates) -> float:
    """The planner's estimated makespan of a class split `members[c, k]` on `counts[k]` replicas:
    per kind, the latest release plus the work released after it spread evenly, plus the
    drain; and the longest chain of a class on a kind it uses."""
    finish = 0.0
    work = np.where(np.isfinite(classes.work_s), classes.work_s, 0.0)
    for k in np.flatnonzero(counts > 0):
        for b, t in enumerate(classes.thresholds):
            later = classes.bucket >= b
            load = float((members[later, k] * work[later, k]).sum())
            if np.isfinite(t) and load > 0:
                finish = max(finish, t + load / counts[k] + estimates.drain_s[k])
    chain = classes.arrival_s[:, None] + classes.latency_s
    used = members > 0
    if used.any():
        finish = max(finish, float(chain[used].max()))
    return finish


def size_fleet(
    requests: pd.DataFrame,
    candidates: list[Candidate],
    deadline_s: float,
    *,
    billing: str = "window",
    solver: str = "scip",
    time_limit_s: float = 20.0,
    seed: int = 0,
    profiles=None,
    only: int | None = None,
) -> Sizing:
    """The cheapest fleet the model accepts at `deadline_s` (module docstring).

    `only`: consider just this candidate (a single-kind fleet; minimums of others ignored).

    Raises:
        Unreachable: no fleet of the candidates finishes by the deadline in the model.
    """
    check_options(billing, solver, deadline_s)
    output = planning_lengths(requests)
    available = np.array([c.available for c in candidates], dtype=np.int64)
    minimum = np.array([c.minimum for c in candidates], dtype=np.int64)
    if only is not None:
        keep = np.arange(len(candidates)) == only
        available, minimum = np.where(keep, available, 0), np.where(keep, minimum, 0)
    started = time.perf_counter()
    num_replicas, seen, found = len(candidates), set(), None
    for _ in range(MAX_ESTIMATE_ROUNDS + 1):
        estimates = fleet_estimates(requests, candidates, num_replicas, output, profiles)
        found = _solve_once(estimates, candidates, deadline_s, billing, solver, time_limit_s, seed, available, minimum, started)
        key = tuple(found.counts)
        if key in seen or int(found.counts.sum()) == num_replicas:
            break
        seen.add(key)
        num_replicas = max(int(found.counts.sum()), 1)
    return found


def _solve_once(estimates, candidates, deadline_s, billing, solver, time_limit_s, seed, available, minimum, started) -> Sizing:
    """LP relaxation, its rounding to a whole fleet (the incumbent and the solver's hint),
    then the MIP; the cheaper of the MIP's fleet and the rounding."""
    classes = make_classes(estimates)
    model, z, n = sizing_model(estimates, classes, candidates, deadline_s, billing, available, minimum)
    stranded = np.flatnonzero((n < 0).all(axis=1))
    if len(stranded):
        raise Unreachable(f"{int(classes.count[stranded].sum())} requests cannot finish by {deadline_s:,.1f} s on any available kind: "
                          "their chain alone (prefill, then each token one after another) is longer.")
    bound, lp_values = lp_solution(model)
    if lp_values is None:
        raise Unreachable(f"no fleet within the availability finishes the work by {deadline_s:,.1f} s (even fractionally).")
    model.lower[model.objective] = max(bound * (1 - 1e-9), 0.0)
    options = []
    rounded = rounded_fleet(lp_values, n, classes, estimates, deadline_s, available, minimum)
    if rounded is not None:
        rounded = fewer_replicas(model, z, n, classes, estimates, deadline_s, minimum, billing_rates(candidates), *rounded)
        options.append((*rounded, "ROUNDED_LP"))
        model.hint = fleet_hint(model, z, n, *rounded, _cost(candidates, *rounded, classes, estimates, deadline_s, billing))
    remaining = max(time_limit_s - (time.perf_counter() - started), 1.0)
    result = solve_model(model, solver, time_limit_s=remaining, deterministic_limit_s=0.5 * time_limit_s, num_workers=8, seed=seed)
    if result.values is not None:
        members = np.where(n >= 0, np.rint(result.values[np.maximum(n, 0)]), 0.0)
        options.insert(0, (np.rint(result.values[z]).astype(np.int64), members, result.status))
    if not options:
        if result.status == "INFEASIBLE":
            raise Unreachable(f"no whole number of replicas within the availability finishes by {deadline_s:,.1f} s.")
        raise OptimizerError(f"The fleet-sizing solver ({solver}) found no fleet in {time_limit_s:g} s; raise --time-limit.")
    costs = [_cost(candidates, counts, members, classes, estimates, deadline_s, billing) for counts, members, _ in options]
    best = int(np.argmin(costs))
    counts, members, status = options[best]
    work = (members * np.where(np.isfinite(classes.work_s), classes.work_s, 0.0)).sum(axis=0)
    proven = max(float(result.bound), bound) if np.isfinite(result.bound) else bound
    return Sizing(
        counts=counts,
        cost_usd=costs[best],
        lower_bound_usd=bound,
        proven_bound_usd=min(proven, costs[best]),
        estimated_makespan_s=model_makespan(counts, members, classes, estimates),
        deadline_s=deadline_s,
        billing=billing,
        status="OPTIMAL" if costs[best] <= proven * (1 + 1e-6) else "FEASIBLE",
        solve_time_s=time.perf_counter() - started,
        work_s=work,
        drain_s=estimates.drain_s.copy(),
    )


def _cost(candidates, counts, members, classes: Classes, estimates: Estimates, deadline_s: float, billing: str) -> float:
    rate = billing_rates(candidates)
    if billing == "window":
        return float(np.sum(rate * counts) * deadline_s)
    work = (members * np.where(np.isfinite(classes.work_s), classes.work_s, 0.0)).sum(axis=0)
    return float(np.sum(rate * (work + estimates.drain_s * counts)))


def window_cost(candidates: list[Candidate], counts, window_s: float) -> float:
    """USD for renting `counts` of each candidate for `window_s` seconds."""
    return float(np.sum(billing_rates(candidates) * np.asarray(counts)) * window_s)


#: Budget search stops when the deadline is known to within this relative width.
DEADLINE_TOLERANCE = 0.005


def fastest_within_budget(
    requests: pd.DataFrame, candidates: list[Candidate], budget_usd: float = math.inf, *, billing: str = "window", **options
) -> Sizing:
    """The shortest deadline (to DEADLINE_TOLERANCE) some fleet meets, in the model, for at most
    `budget_usd`, found by bisection over deadlines with `size_fleet` (infinite budget: the
    shortest deadline any fleet within the availability meets).

    Under until-done billing the cheapest cost only falls as the deadline grows, so the
    bisection finds the shortest deadline. Under window billing a longer window also costs
    more per replica, so the cheapest cost is not monotone in the deadline: the bisection
    then finds a deadline that fits the budget with a shorter one on its grid that does not.

    Raises:
        OptimizerError: no fleet fits the budget at any deadline tried.
    """
    if not budget_usd > 0:
        raise OptimizerError(f"The budget must be greater than 0 USD, got {budget_usd:g}.")
    output = planning_lengths(requests)
    estimates = fleet_estimates(requests, candidates, len(candidates), output, options.get("profiles"))
    chain = np.where(estimates.eligible, estimates.arrival_s[:, None] + estimates.latency_s, np.inf).min(axis=1)
    low = float(chain.max()) * (1 - DEADLINE_TOLERANCE)  # below every request's shortest chain: no fleet
    cheapest: Sizing | None = None

    def fits(deadline_s: float) -> Sizing | None:
        nonlocal cheapest
        try:
            sizing = size_fleet(requests, candidates, deadline_s, billing=billing, **options)
        except Unreachable:
            return None
        if cheapest is None or sizing.cost_usd < cheapest.cost_usd:
            cheapest = sizing
        return sizing if sizing.cost_usd <= budget_usd * (1 + 1e-9) else None

    high, found = low * 1.25, None
    for _ in range(24):
        found = fits(high)
        if found is not None:
            break
        low, high = high, high * 2
    if found is None:
        if cheapest is None:
            raise Unreachable("no fleet within the availability meets any deadline tried.")
        raise OptimizerError(f"No fleet fits a budget of {budget_usd:,.2f} USD: the cheapest found costs {cheapest.cost_usd:,.2f} USD "
                             f"(deadline {cheapest.deadline_s:,.1f} s, {billing} billing).")
    while high / low - 1 > DEADLINE_TOLERANCE:
        middle = math.sqrt(low * high)
        sizing = fits(middle)
        if sizing is None:
            low = middle
        else:
            high, found = middle, sizing
    return found
