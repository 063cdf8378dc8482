"""Rounding the fleet-sizing LP (`optimizer.planning.sizing`) to a whole fleet the model accepts.

The LP relaxation's solution gives each class's members per kind (fractions) and each
kind's count (fractions). A whole fleet: each class's members rounded by largest remainder,
members moved off kinds whose available replicas cannot hold them, then each kind's count
the least that holds its work in every arrival bucket (in the model's integer ticks of
T x TICK seconds). `fewer_replicas` then removes replicas, dearest kind first, while the LP
with the counts fixed still splits the work and its rounding still fits. The result is the
MIP's hint, and the answer when the MIP finds nothing cheaper.
"""

from __future__ import annotations

import math

import numpy as np

from optimizer.fleet.estimates import Estimates
from optimizer.planning.backends import lp_solution
from optimizer.planning.formulation import Classes, LinearModel

#: Resolution of the work rows, as a fraction of the deadline.
TICK = 1e-6


def rounded_fleet(values, n, classes: Classes, estimates: Estimates, deadline_s: float, available, minimum):
    """A whole fleet from the LP solution, or None: each class's members rounded by largest
    remainder, then each kind's count the least that holds its (tick-rounded) work in every
    bucket, as the model's rows ask."""
    lp = np.where(n >= 0, values[np.maximum(n, 0)], 0.0)
    members = np.floor(lp + 1e-9)
    short = (classes.count - members.sum(axis=1)).astype(np.int64)
    remainder = np.where(n >= 0, lp - members, -1.0)
    for c in np.flatnonzero(short > 0):
        members[c, np.argsort(-remainder[c], kind="stable")[: short[c]]] += 1
    if np.any(members[n < 0] > 0):
        return None
    tick = deadline_s * TICK
    ticks = np.where(n >= 0, np.ceil(np.where(np.isfinite(classes.work_s), classes.work_s, 0.0) / tick), 0.0)
    _within_availability(members, ticks, n, classes, estimates, deadline_s, tick, available)
    counts = np.array(minimum, dtype=np.int64)
    for k in range(n.shape[1]):
        for b, t in enumerate(classes.thresholds):
            load = float((members[classes.bucket >= b, k] * ticks[classes.bucket >= b, k]).sum())
            if np.isfinite(t) and load > 0:
                capacity = math.floor((deadline_s - t - estimates.drain_s[k]) / tick)
                if capacity <= 0:
                    return None
                counts[k] = max(counts[k], math.ceil(load / capacity))
    return (counts, members) if np.all(counts <= available) else None


def _within_availability(members, ticks, n, classes: Classes, estimates: Estimates, deadline_s: float, tick: float, available) -> None:
    """Move members (in place) off kinds whose total work no longer fits their available
    replicas after rounding, to kinds with room, cheapest move in ticks first."""
    first = float(np.min(classes.thresholds[np.isfinite(classes.thresholds)]))
    room = np.floor((deadline_s - first - estimates.drain_s) / tick) * np.asarray(available, dtype=float)
    for k in range(n.shape[1]):
        excess = float((members[:, k] * ticks[:, k]).sum()) - room[k]
        for c in np.argsort(-members[:, k], kind="stable"):
            if excess <= 0 or members[c, k] == 0:
                break
            loads = (members * ticks).sum(axis=0)
            for other in np.argsort(-(room - loads), kind="stable"):
                if other == k or n[c, other] < 0 or ticks[c, other] <= 0:
                    continue
                fits = math.floor((room[other] - loads[other]) / ticks[c, other])
                moved = int(min(members[c, k], math.ceil(excess / ticks[c, k]), max(fits, 0)))
                if moved > 0:
                    members[c, k] -= moved
                    members[c, other] += moved
                    excess -= moved * ticks[c, k]
                    break


def fewer_replicas(model, z, n, classes, estimates, deadline_s, minimum, rates, counts, members):
    """Improve a rounded fleet: remove replicas one at a time, dearest kind first, while the
    LP with the counts fixed still splits the work and its rounding still fits them.
    (Rounding each kind up separately can rent a replica for a sliver of work.)"""
    order = np.argsort(-np.asarray(rates), kind="stable")
    for k in order:
        while counts[k] > minimum[k]:
            trial = counts.copy()
            trial[k] -= 1
            lower, upper = list(model.lower), list(model.upper)
            for kind, index in enumerate(z):
                lower[int(index)] = upper[int(index)] = float(trial[kind])
            _, values = lp_solution(model, lower, upper)
            found = None if values is None else rounded_fleet(values, n, classes, estimates, deadline_s, trial, minimum)
            if found is None:
                break
            counts, members = found
    return counts, members


def fleet_hint(model: LinearModel, z, n, counts, members, cost: float) -> list[float]:
    hint = [0.0] * model.num_vars
    hint[model.objective] = cost
    for k, index in enumerate(z):
        hint[int(index)] = float(counts[k])
    for c, k in zip(*np.nonzero(n >= 0)):
        hint[int(n[c, k])] = float(members[c, k])
    return hint
