"""The planning facade: `solve(requests, cluster, solver=...) -> Result`.

Cost model (until the calibrated performance model lands): a request costs its token
count, prompt_tokens + output_tokens (the predicted output where the real one is unknown),
and every replica is treated as equally fast. The makespan is the largest token load of a
replica, and its lower bound is max(total / m, largest request) over each model's replicas.

Order inside a replica: longest output first for an offline batch (long decode chains must
start early), arrival order otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.cluster import Cluster
from optimizer.errors import OptimizerError
from optimizer.heuristics import eligibility_groups, lpt, round_robin

#: Planning methods by name.
SOLVERS: dict[str, str] = {
    "lpt": "longest processing time first to the least-loaded eligible replica",
    "round-robin": "each request to the next eligible replica in turn",
}


@dataclass(frozen=True)
class Result:
    """A plan and how it was obtained. A time limit is a status here, never an exception."""

    plan: pd.DataFrame
    solver: str
    status: str
    objective: float
    lower_bound: float
    objective_unit: str
    solve_time_s: float

    @property
    def ratio_to_bound(self) -> float:
        return self.objective / self.lower_bound if self.lower_bound > 0 else float("nan")


def planning_lengths(requests: pd.DataFrame) -> np.ndarray:
    """Output lengths a plan may use: the real ones, else the predictions."""
    output = requests["output_tokens"].fillna(requests["predicted_output_tokens"])
    unknown = output.isna().to_numpy()
    if unknown.any():
        request_id = requests["request_id"].iloc[int(np.argmax(unknown))]
        raise OptimizerError(
            f"Request {request_id!r} has neither output_tokens nor predicted_output_tokens; "
            f"planning needs one of them ({int(unknown.sum())} requests lack both)."
        )
    return output.to_numpy(dtype=np.int64)


def check_models(requests: pd.DataFrame, cluster: Cluster) -> None:
    """Every model the trace asks for must be served by some replica."""
    asked = set(requests["model"]) - {""}
    for model in sorted(asked - set(cluster.models)):
        first = requests["request_id"][requests["model"] == model].iloc[0]
        count = int((requests["model"] == model).sum())
        raise OptimizerError(
            f"{count} requests (first {first!r}) ask for model {model!r}, which no replica serves "
            f"(the cluster serves {', '.join(cluster.models)}); use --model to serve every request with one model."
        )


def solve(requests: pd.DataFrame, cluster: Cluster, *, solver: str = "lpt") -> Result:
    """Assign every request to a replica and order each replica's requests.

    Raises:
        OptimizerError: for an unknown solver, a model no replica serves, or requests
            without any output length.
    """
    if solver not in SOLVERS:
        raise OptimizerError(f"Unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}.")
    check_models(requests, cluster)
    started = time.perf_counter()
    output = planning_lengths(requests)
    cost = (requests["prompt_tokens"].to_numpy(dtype=np.int64) + output).astype(float)
    models = requests["model"].to_numpy(dtype=object)
    replica_models = [r.model for r in cluster.replicas]
    if solver == "lpt":
        assignment = lpt(cost, models, replica_models)
    else:
        assignment = round_robin(models, replica_models)
    plan = _ordered_plan(requests, cluster, assignment, output)
    elapsed = time.perf_counter() - started
    load = np.bincount(assignment, weights=cost, minlength=len(cluster))
    return Result(
        plan=plan,
        solver=solver,
        status="HEURISTIC",
        objective=float(load.max()),
        lower_bound=_token_bound(cost, models, replica_models),
        objective_unit="tokens",
        solve_time_s=elapsed,
    )


def _ordered_plan(requests: pd.DataFrame, cluster: Cluster, assignment: np.ndarray, output: np.ndarray) -> pd.DataFrame:
    """Plan rows grouped by replica (cluster order), each replica's requests in run order."""
    offline = bool((requests["arrival_s"] == 0).all())
    # Lexsort keys, last is primary: replica, then longest output (offline) or arrival.
    position = np.arange(len(requests))
    within = -output if offline else requests["arrival_s"].to_numpy()
    rows = np.lexsort((position, within, assignment))
    replica = assignment[rows]
    starts = np.r_[0, np.flatnonzero(np.diff(replica)) + 1]
    order = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    return pd.DataFrame(
        {
            "request_id": requests["request_id"].to_numpy()[rows],
            "replica": np.asarray(cluster.names, dtype=object)[replica],
            "order": order.astype(np.int64),
            "planned_start_s": np.nan,
            "planned_end_s": np.nan,
        }
    )


def _token_bound(cost: np.ndarray, models: np.ndarray, replica_models: list[str]) -> float:
    """max(total / m, largest request, each model group's total / its replicas)."""
    bound = max(float(cost.max()), float(cost.sum()) / len(replica_models))
    for model, replicas in eligibility_groups(models, replica_models).items():
        bound = max(bound, float(cost[models == model].sum()) / len(replicas))
    return bound
