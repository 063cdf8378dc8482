"""A fleet sized by the model, checked as it would run, next to the best single-kind fleet.

For a deadline T (`optimizer.planning.sizing`):

1. size the fleet with the MIP at a target T' (first T' = T);
2. plan it with the planner (`optimizer.planning.solve.solve`) and simulate the plan with the
   actual output lengths (`optimizer.serving.simulator.simulate`, dispatch "plan");
3. if the simulated makespan M misses T, tighten the target by the miss and go back to 1,
   at most `max_rounds` times in all: T' <- min(T', E) - (M - T), with E the fleet's
   estimated makespan (from E, so that the fleet that missed is out of the next round's reach);
   if no fleet reaches that target in the model, halfway back to E, twice at most.

The bill of a checked fleet (USD), with r_k the price of a replica-second of kind k:

    window billing:      sum_k r_k z_k T                        (rented for the whole window)
    until-done billing:  sum_replicas r_k(replica) f_replica    (f = its last finish in the simulation)

GPU-hours per kind are the billed hours times tp; utilization per kind is the simulated busy
time over the billed time. The same check runs for each candidate alone (its minimum and
the others' ignored), and the cheapest single kind that meets T is the baseline:
saving = 1 - cost / cost of that baseline. The chosen fleet is the mixed search's, unless a
single-kind check found a cheaper fleet that meets T (the two searches tighten differently
after a miss): then that one, and a note says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.fleet.estimates import estimate, hindsight_lengths
from optimizer.planning.candidates import Candidate, fleet_cluster
from optimizer.planning.sizing import Sizing, Unreachable, billing_rates, fastest_within_budget, size_fleet
from optimizer.planning.solve import solve
from optimizer.serving.results import Simulation
from optimizer.serving.simulator import simulate

#: Rounds of size, plan, simulate (the first included) before giving up on a deadline.
MAX_ROUNDS = 4


@dataclass(frozen=True)
class Round:
    target_s: float
    counts: tuple[int, ...]
    estimated_makespan_s: float
    simulated_makespan_s: float


@dataclass(frozen=True)
class Checked:
    """A fleet as the model chose it, planned and simulated."""

    counts: np.ndarray
    sizing: Sizing  # of the last round
    rounds: list[Round]
    plan: pd.DataFrame
    simulation: Simulation
    simulated_makespan_s: float
    deadline_s: float
    cost_usd: float
    #: Per candidate: billed GPU-hours and busy share of the billed time.
    gpu_hours: np.ndarray
    utilization: np.ndarray

    @property
    def met(self) -> bool:
        return self.simulated_makespan_s <= self.deadline_s

    @property
    def tightened(self) -> bool:
        return len(self.rounds) > 1


@dataclass(frozen=True)
class FleetChoice:
    """The mixed fleet, each candidate alone (None where it cannot meet T), and the bound."""

    chosen: Checked
    single: list[Checked | None]
    lower_bound_usd: float  # LP relaxation of the sizing model at the user's deadline
    notes: list[str] = field(default_factory=list)

    @property
    def best_single(self) -> int | None:
        met = [k for k, s in enumerate(self.single) if s is not None and s.met]
        return min(met, key=lambda k: (self.single[k].cost_usd, k)) if met else None

    @property
    def saving(self) -> float:
        best = self.best_single
        return 1 - self.chosen.cost_usd / self.single[best].cost_usd if best is not None else float("nan")


def describe(candidates: list[Candidate], counts) -> str:
    """'h100-tp1 x3 + l40s-tp1 x2'."""
    return " + ".join(f"{c.label} x{int(n)}" for c, n in zip(candidates, counts) if n) or "(none)"


def billed(candidates: list[Candidate], counts, simulation: Simulation, cluster, deadline_s: float, billing: str):
    """Cost, GPU-hours and utilization per candidate of a simulated fleet (module docstring)."""
    rate = billing_rates(candidates)
    kinds = [c.kind for c in candidates]
    table = simulation.replicas.set_index("replica")
    kind_of = np.array([kinds.index(r.kind) for r in cluster.replicas])
    finish = table.loc[cluster.names, "last_finish_s"].to_numpy(dtype=float)
    busy = table.loc[cluster.names, "busy_s"].to_numpy(dtype=float)
    held = np.full(len(cluster), deadline_s) if billing == "window" else finish
    seconds = np.bincount(kind_of, weights=held, minlength=len(candidates))
    busy_k = np.bincount(kind_of, weights=busy, minlength=len(candidates))
    tp = np.array([c.replica.tp for c in candidates])
    cost = float(np.sum(rate * seconds))
    with np.errstate(invalid="ignore", divide="ignore"):
        utilization = np.where(seconds > 0, busy_k / seconds, np.nan)
    return cost, seconds * tp / 3600.0, utilization


def check_fleet(
    requests: pd.DataFrame,
    candidates: list[Candidate],
    deadline_s: float,
    *,
    billing: str = "window",
    solver: str = "scip",
    planner: str = "cp-sat",
    plan_time_limit_s: float = 5.0,
    time_limit_s: float = 20.0,
    max_rounds: int = MAX_ROUNDS,
    seed: int = 0,
    profiles=None,
    only: int | None = None,
) -> Checked:
    """Steps 1-3 of the module docstring. Raises `Unreachable` if the first round finds no fleet."""
    target, rounds, last, ceiling = deadline_s, [], None, deadline_s
    for number in range(max_rounds):
        sizing = None
        for _ in range(3):
            try:
                sizing = size_fleet(requests, candidates, target, billing=billing, solver=solver, time_limit_s=time_limit_s,
                                    seed=seed, profiles=profiles, only=only)
                break
            except Unreachable:
                if last is None:
                    raise
                # Tightened below what any fleet reaches in the model: halfway back to the
                # estimate of the fleet that missed (still out of that fleet's reach).
                target = (target + ceiling) / 2
        if sizing is None:
            break  # keep the last fleet, which missed
        cluster = fleet_cluster(candidates, sizing.counts)
        plan = solve(requests, cluster, solver=planner, time_limit_s=plan_time_limit_s, seed=seed, profiles=profiles).plan
        simulation = simulate(requests, cluster, dispatch="plan", plan=plan, seed=seed, profiles=profiles)
        makespan = float(simulation.requests["finish_s"].max())
        rounds.append(Round(float(target), tuple(int(n) for n in sizing.counts), sizing.estimated_makespan_s, makespan))
        last = (sizing, cluster, plan, simulation, makespan)
        if makespan <= deadline_s:
            break
        ceiling = min(target, sizing.estimated_makespan_s) * (1 - 1e-6)
        target = ceiling - (makespan - deadline_s)
        if target <= 0:
            break
    sizing, cluster, plan, simulation, makespan = last
    cost, gpu_hours, utilization = billed(candidates, sizing.counts, simulation, cluster, deadline_s, billing)
    return Checked(sizing.counts, sizing, rounds, plan, simulation, makespan, deadline_s, cost, gpu_hours, utilization)


def choose_fleet(
    requests: pd.DataFrame,
    candidates: list[Candidate],
    deadline_s: float,
    *,
    billing: str = "window",
    solver: str = "scip",
    planner: str = "cp-sat",
    plan_time_limit_s: float = 5.0,
    time_limit_s: float = 20.0,
    max_rounds: int = MAX_ROUNDS,
    seed: int = 0,
    profiles=None,
    baselines: bool = True,
) -> FleetChoice:
    """The checked mixed fleet, and (with `baselines`) each candidate alone.

    Raises:
        OptimizerError: no fleet meets the deadline in the model, with the shortest
            makespan everything available reaches and the chain bound that forces it.
    """
    options = dict(billing=billing, solver=solver, planner=planner, plan_time_limit_s=plan_time_limit_s,
                   time_limit_s=time_limit_s, max_rounds=max_rounds, seed=seed, profiles=profiles)
    try:
        chosen = check_fleet(requests, candidates, deadline_s, **options)
    except Unreachable as exc:
        raise OptimizerError(unreachable_message(requests, candidates, deadline_s, str(exc), planner, plan_time_limit_s, seed, profiles)) from None
    single: list[Checked | None] = []
    for k, candidate in enumerate(candidates):
        if not baselines or candidate.available == 0:
            single.append(None)
            continue
        try:
            single.append(check_fleet(requests, candidates, deadline_s, only=k, **options))
        except Unreachable:
            single.append(None)
    # The LP bound at the user's own deadline (the first round's model).
    first = chosen.sizing if not chosen.tightened else size_fleet(
        requests, candidates, deadline_s, billing=billing, solver=solver, time_limit_s=time_limit_s, seed=seed, profiles=profiles)
    notes = []
    best = min((s for s in single if s is not None and s.met), key=lambda s: s.cost_usd, default=None)
    if best is not None and (not chosen.met or best.cost_usd < chosen.cost_usd * (1 - 1e-9)):
        notes.append(f"the mixed search's fleet ({describe(candidates, chosen.counts)}, {chosen.cost_usd:,.4f} USD, "
                     f"simulated {chosen.simulated_makespan_s:,.1f} s) "
                     + ("missed the deadline" if not chosen.met else "cost more after its simulation check")
                     + "; the cheaper single-kind fleet that meets it is chosen.")
        chosen = best
    if chosen.tightened:
        notes.append("simulation missed the deadline; the target the model sees was tightened: "
                     + ", ".join(f"{r.target_s:,.1f} s -> simulated {r.simulated_makespan_s:,.1f} s" for r in chosen.rounds) + ".")
    if not chosen.met:
        notes.append(f"the chosen fleet still misses the deadline in simulation by {chosen.simulated_makespan_s - deadline_s:,.1f} s "
                     f"after {len(chosen.rounds)} rounds.")
    return FleetChoice(chosen, single, first.lower_bound_usd, notes)


def unreachable_message(requests, candidates, deadline_s, reason, planner, plan_time_limit_s, seed, profiles) -> str:
    """Why no fleet meets the deadline: the shortest makespan with everything available, and
    the chain bound (a request's prefill then its tokens one after another, on its fastest kind)."""
    counts = [c.available for c in candidates]
    cluster = fleet_cluster(candidates, counts)
    best = solve(requests, cluster, solver=planner, time_limit_s=plan_time_limit_s, seed=seed, profiles=profiles)
    hindsight = estimate(requests, cluster, hindsight_lengths(requests), profiles=profiles)
    fastest = np.where(hindsight.eligible, hindsight.min_latency_s, np.inf)
    chain = hindsight.arrival_s + fastest.min(axis=1)
    j = int(np.argmax(chain))
    kind = hindsight.kinds[int(np.argmin(fastest[j]))]
    row = requests.iloc[j]
    return (
        f"No fleet of the candidates finishes the {len(requests):,} requests by {deadline_s:,.1f} s: {reason} "
        f"With everything available ({describe(candidates, counts)}) the shortest estimated makespan is "
        f"{best.objective:,.1f} s (lower bound {best.lower_bound:,.1f} s, {best.bounds.binding}); the chain bound alone is "
        f"{chain[j]:,.1f} s (request {row['request_id']}: its {int(row['prompt_tokens']):,}-token prefill, then "
        f"{int(row['output_tokens']):,} tokens one after another, on {kind})."
    )


#: Columns of the side-by-side table.
COLUMNS = ("fleet", "replicas", "cost_usd", "over_lp_bound", "estimated_makespan_s", "simulated_makespan_s", "met", "rounds")


def side_by_side(choice: FleetChoice, candidates: list[Candidate]) -> pd.DataFrame:
    """One row for the chosen fleet, one per candidate alone."""
    rows = []
    for label, checked in [("chosen", choice.chosen), *((f"{c.label} only", s) for c, s in zip(candidates, choice.single))]:
        if checked is None:
            rows.append({"fleet": label, "replicas": "cannot meet the deadline"})
            continue
        rows.append({
            "fleet": label,
            "replicas": describe(candidates, checked.counts),
            "cost_usd": checked.cost_usd,
            "over_lp_bound": checked.cost_usd / choice.lower_bound_usd if choice.lower_bound_usd > 0 else np.nan,
            "estimated_makespan_s": checked.sizing.estimated_makespan_s,
            "simulated_makespan_s": checked.simulated_makespan_s,
            "met": checked.met,
            "rounds": len(checked.rounds),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def per_kind(checked: Checked, candidates: list[Candidate]) -> pd.DataFrame:
    """Replicas, GPU-hours and utilization of each kind the fleet rents."""
    rows = [
        {"kind": c.kind, "replicas": int(n), "price_per_gpu_hour": c.price_per_gpu_hour, "gpu_hours": float(h), "utilization": float(u)}
        for c, n, h, u in zip(candidates, checked.counts, checked.gpu_hours, checked.utilization) if n
    ]
    return pd.DataFrame(rows, columns=["kind", "replicas", "price_per_gpu_hour", "gpu_hours", "utilization"])


def choose_within_budget(requests: pd.DataFrame, candidates: list[Candidate], budget_usd: float, *, billing: str = "window",
                         solver: str = "scip", time_limit_s: float = 20.0, seed: int = 0, profiles=None, **options) -> Checked:
    """The fleet with the shortest deadline the model meets within `budget_usd`
    (`optimizer.planning.sizing.fastest_within_budget`), checked as it would run."""
    sizing = fastest_within_budget(requests, candidates, budget_usd, billing=billing, solver=solver, time_limit_s=time_limit_s,
                                   seed=seed, profiles=profiles)
    return check_fleet(requests, candidates, sizing.deadline_s, billing=billing, solver=solver, time_limit_s=time_limit_s,
                       seed=seed, profiles=profiles, **options)
