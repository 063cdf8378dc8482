"""Deviations of reality from a plan, injected into a simulation (all seeded).

- Arrival jitter: request j arrives at max(0, a_j + jitter_s Z_j), Z_j ~ N(0, 1), instead
  of its planned a_j. (Output-length error is a matter of predictions: `optimizer.serving.predictor`.)
- Slowdown: from `at_s` on, every iteration of the replica takes `factor` times as long
  (thermal throttling, a noisy neighbour). An iteration is charged at its start.
- Failure: the replica stops at its first iteration boundary at or after `at_s`. Its
  running and waiting requests go back to dispatch at that moment; a running one keeps the
  tokens it has sent and is restarted by recomputing its prompt and those tokens (as a
  recompute preemption does), so none is lost and none runs twice to completion. Requests
  that arrive later are never sent to it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from optimizer.common.errors import OptimizerError
from optimizer.fleet.cluster import Cluster


#: Largest slowdown factor of a replica; a slower replica has in effect failed.
MAX_SLOWDOWN = 1e6

@dataclass(frozen=True)
class Slowdown:
    replica: str
    at_s: float
    factor: float


@dataclass(frozen=True)
class Failure:
    replica: str
    at_s: float


@dataclass(frozen=True)
class Deviations:
    arrival_jitter_s: float = 0.0
    slowdowns: tuple[Slowdown, ...] = ()
    failures: tuple[Failure, ...] = ()
    seed: int = 0

    def check(self, cluster: Cluster) -> None:
        """Clear errors for deviations that name unknown replicas or leave no replica."""
        if not 0 <= self.arrival_jitter_s < math.inf:
            raise OptimizerError(f"Arrival jitter must be a finite number of seconds, at least 0, got {self.arrival_jitter_s:g}.")
        for event in (*self.slowdowns, *self.failures):
            if event.replica not in cluster.names:
                raise OptimizerError(f"No replica named {event.replica!r}; the cluster has {', '.join(cluster.names)}.")
            if not 0 <= event.at_s < math.inf:
                raise OptimizerError(f"Replica {event.replica!r}: the deviation time must be finite and at least 0 s, got {event.at_s:g}.")
        for slow in self.slowdowns:
            # Above a million times slower, the replica has failed: say so with --fail.
            if not 0 < slow.factor <= MAX_SLOWDOWN:
                raise OptimizerError(f"Replica {slow.replica!r}: the slowdown factor must be above 0 and at most {MAX_SLOWDOWN:g} "
                                     f"(use --fail for a replica that stops), got {slow.factor:g}.")
        failed = {f.replica for f in self.failures}
        if len(failed) < len(self.failures):
            raise OptimizerError("A replica can fail only once.")
        for model in cluster.models:
            if all(r.name in failed for r in cluster.replicas if r.model == model):
                raise OptimizerError(f"Every replica serving {model} fails; its requests could not finish.")
        if len({s.replica for s in self.slowdowns}) < len(self.slowdowns):
            raise OptimizerError("Give at most one slowdown per replica.")

    def arrivals(self, planned_s: np.ndarray) -> np.ndarray:
        """Real arrival times: the planned ones, jittered."""
        if self.arrival_jitter_s == 0:
            return np.asarray(planned_s, dtype=float)
        rng = np.random.default_rng([self.seed, 2])  # a stream of its own (see predictor.noisy_oracle)
        return np.maximum(np.asarray(planned_s, dtype=float) + self.arrival_jitter_s * rng.standard_normal(len(planned_s)), 0.0)


_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_slowdown(text: str) -> Slowdown:
    """'REPLICA@SECONDS:FACTOR', e.g. 'h100-tp4-0@60:1.5'."""
    match = re.fullmatch(rf"\s*([^@\s]+)@{_NUMBER}:{_NUMBER}\s*", text)
    if not match:
        raise OptimizerError(f"Slowdown {text!r} is not REPLICA@SECONDS:FACTOR (e.g. h100-tp4-0@60:1.5).")
    return Slowdown(match[1], float(match[2]), float(match[3]))


def parse_failure(text: str) -> Failure:
    """'REPLICA@SECONDS', e.g. 'a100-tp4-3@100'."""
    match = re.fullmatch(rf"\s*([^@\s]+)@{_NUMBER}\s*", text)
    if not match:
        raise OptimizerError(f"Failure {text!r} is not REPLICA@SECONDS (e.g. a100-tp4-3@100).")
    return Failure(match[1], float(match[2]))
