"""The dispatch rules that look only at the replicas now: round-robin, least outstanding, least work,
random, and following a plan. `optimizer.serving.dispatch` lists them all."""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.fleet.cluster import Cluster
from optimizer.fleet.estimates import Estimates
from optimizer.planning.plan import validate_plan


class _Dispatcher:
    def __init__(self, requests: pd.DataFrame, cluster: Cluster, estimates: Estimates):
        # Per (request, kind), looked up through each replica's kind: a (requests x replicas)
        # copy would take gigabytes on large fleets.
        self.kind = estimates.kind_of_replica
        self.eligible_kind = estimates.eligible
        self.work_kind = estimates.work_s
        self.arrival = estimates.arrival_s
        self.prefill_kind = estimates.prefill_s
        self.prompt_tokens = requests["prompt_tokens"].to_numpy(dtype=np.int64)
        self.replica_of = np.full(len(requests), -1, dtype=np.int64)  # where each request is now

    def placed(self, row: int, replica: int) -> None:
        self.replica_of[row] = replica

    def usable(self, row: int, replica: int, engines) -> bool:
        return not engines[replica].failed and self.eligible(row, replica)

    def eligible(self, row: int, replica: int) -> bool:
        return bool(self.eligible_kind[row, self.kind[replica]])

    def work(self, row: int, replica: int) -> float:
        return float(self.work_kind[row, self.kind[replica]])

    def queue_key(self, row: int) -> float:
        return float(self.arrival[row])

    def prefix_saving(self, row: int, replica: int, engines) -> float:
        """Seconds of the request's estimated prefill that the replica's prefix cache holds now
        (its cached prompt share x its prefill estimate; 0 without a cache)."""
        engine = engines[replica]
        if engine.cache is None:
            return 0.0
        prompt = int(self.prompt_tokens[row])
        hit, _ = engine.cache.match(engine.unit_chains[row], prompt)
        return hit * engine.cache.block_tokens / prompt * float(self.prefill_kind[row, self.kind[replica]])


class RoundRobin(_Dispatcher):
    def __init__(self, *args):
        super().__init__(*args)
        self.next = 0

    def choose(self, row, engines, now=0.0) -> int:
        m = len(engines)
        for step in range(m):
            r = (self.next + step) % m
            if self.usable(row, r, engines):
                self.next = r + 1
                return r
        raise AssertionError("estimates guarantee an eligible replica")


def least_outstanding(dispatcher: _Dispatcher, row: int, engines) -> int:
    loads = [e.outstanding if dispatcher.usable(row, r, engines) else np.inf for r, e in enumerate(engines)]
    return int(np.argmin(loads))


class LeastOutstanding(_Dispatcher):
    def choose(self, row, engines, now=0.0) -> int:
        return least_outstanding(self, row, engines)


class LeastWork(_Dispatcher):
    """Remaining work of a replica: estimated work of its waiting requests plus the
    not-yet-generated share of its running ones.

    The waiting part is a sum in queue order, kept per replica and extended as requests join
    the back of the queue (summed anew only after another change to the queue), so an
    offline batch costs O(replicas) per request rather than O(requests)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.waiting_sums: dict[int, tuple[int, int, float]] = {}  # replica -> (queue edits, length, sum)

    def choose(self, row, engines, now=0.0) -> int:
        loads = []
        for r, engine in enumerate(engines):
            if not self.usable(row, r, engines):
                loads.append(np.inf)
                continue
            engine.settle()
            waiting = self._waiting_work(r, engine.waiting)
            running = sum(self.work(s.row, r) * (1 - s.generated / s.output) for s in engine.running if s.generated < s.output)
            loads.append(waiting + running + self.work(row, r))
        return int(np.argmin(loads))

    def _waiting_work(self, r: int, queue) -> float:
        edits, length, total = self.waiting_sums.get(r, (-1, 0, 0))
        if edits != queue.edits or length > len(queue):
            length, total = 0, 0
        # Left to right in queue order, as sum() over the whole queue adds (same float result).
        for seq in queue.newest(len(queue) - length):
            total += self.work(seq.row, r)
        self.waiting_sums[r] = (queue.edits, len(queue), total)
        return total


class Random(_Dispatcher):
    def __init__(self, *args, seed: int = 0):
        super().__init__(*args)
        self.rng = np.random.default_rng(seed)

    def choose(self, row, engines, now=0.0) -> int:
        return int(self.rng.choice([r for r in range(len(engines)) if self.usable(row, r, engines)]))


class FollowPlan(_Dispatcher):
    def __init__(self, requests, cluster, estimates, plan: pd.DataFrame):
        super().__init__(requests, cluster, estimates)
        validate_plan(plan, requests, cluster)
        position = pd.Index(requests["request_id"].astype(str)).get_indexer(plan["request_id"].astype(str))
        self.replica = np.empty(len(requests), dtype=np.int64)
        self.order = np.empty(len(requests))
        self.planned_start = np.empty(len(requests))
        self.replica[position] = pd.Index(cluster.names).get_indexer(plan["replica"].astype(str))
        self.order[position] = plan["order"].to_numpy(dtype=float)
        # Hand-written plans may leave the planned times empty; then a request's place in
        # its replica's order stands in for its planned start.
        self.planned_start[position] = plan["planned_start_s"].fillna(plan["order"]).to_numpy(dtype=float)

    def choose(self, row, engines, now=0.0) -> int:
        r = int(self.replica[row])
        return r if not engines[r].failed else least_outstanding(self, row, engines)

    def queue_key(self, row: int) -> float:
        return float(self.order[row])
