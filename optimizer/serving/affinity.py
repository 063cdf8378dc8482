"""The cache-affinity dispatch rule: SGLang's cache-aware router (sgl-router `cache_aware` policy).

The router keeps, per worker, an approximate radix tree of the prompts it has sent there
(not the engine's real cache: it never hears of evictions), and per request:

1. If the load is imbalanced, max_load - min_load > `balance_abs` and
   max_load > `balance_rel` x min_load (load = requests waiting and running on the replica),
   it sends the request to the least loaded replica (shortest queue).
2. Otherwise it finds the replica whose tree matches the longest prefix of the prompt. If
   the match covers more than `cache_threshold` of the prompt, the request goes there;
   else to the replica with the smallest tree (the most room left for new prefixes).
3. The prompt is inserted into the chosen replica's tree.

Defaults are the router's (cache_threshold 0.3, balance_abs_threshold 64,
balance_rel_threshold 1.5). Prefixes are matched as the trace declares them
(`optimizer.traces.prefixes`: a segment matches when the tree holds its key), not per
character; a prompt's tokens past its last segment are its own. Ties go to the lowest index.
"""

from __future__ import annotations

from optimizer.common.options import NamedOptions
from optimizer.serving.rules import _Dispatcher
from optimizer.traces.prefixes import has_prefixes, prefix_chains


class CacheAffinity(_Dispatcher, NamedOptions):
    """SGLang's cache-aware routing (module docstring)."""

    name = "cache-affinity"
    label = "Dispatch"
    cache_threshold = 0.3
    balance_abs = 64.0
    balance_rel = 1.5
    options = {"cache_threshold": (0.0, 1.0), "balance_abs": (0.0, None), "balance_rel": (1.0, None)}

    def __init__(self, requests, cluster, estimates, **options):
        _Dispatcher.__init__(self, requests, cluster, estimates)
        NamedOptions.__init__(self, **options)
        self.chains = prefix_chains(requests) if has_prefixes(requests) else [()] * len(requests)
        self.prompt = requests["prompt_tokens"].to_numpy().tolist()
        self.trees: list[set] = [set() for _ in cluster.replicas]  # keys of the segments sent to each replica
        self.tree_tokens = [0] * len(cluster)

    def choose(self, row, engines, now=0.0) -> int:
        usable = [r for r in range(len(engines)) if self.usable(row, r, engines)]
        loads = {r: engines[r].outstanding for r in usable}
        low, high = min(loads.values()), max(loads.values())
        chain = self.chains[row]
        if high - low > self.balance_abs and high > self.balance_rel * low:
            chosen = min(usable, key=lambda r: (loads[r], r))
        else:
            matched = {r: self._matched(chain, self.trees[r]) for r in usable}
            best = max(usable, key=lambda r: (matched[r], -r))
            if matched[best] > self.cache_threshold * self.prompt[row]:
                chosen = best
            else:
                chosen = min(usable, key=lambda r: (self.tree_tokens[r], r))
        self._insert(row, chosen)
        return chosen

    @staticmethod
    def _matched(chain, tree: set) -> int:
        matched = 0
        for key, end in chain:
            if key not in tree:
                break
            matched = end
        return matched

    def _insert(self, row: int, replica: int) -> None:
        chain, tree = self.chains[row], self.trees[replica]
        self.tree_tokens[replica] += self.prompt[row] - self._matched(chain, tree)
        tree.update(key for key, _ in chain)
