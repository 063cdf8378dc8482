"""Clusters: the replicas a plan assigns requests to.

A replica is one copy of a model on a tensor-parallel group of `tp` GPUs of one type.
Clusters are written inline as comma-separated groups ``[MODEL@]GPU-tpN[:COUNT]``, for
example ``h100-tp4:4,a100-tp4:4`` (four llama2-70b replicas on 4 H100s each and four on
4 A100s each) or ``llama2-70b@h100-tp4:2,bloom-176b@h100-tp8:1``. Replicas are named
``GPU-tpN-K`` with K counting from 0 within each (GPU, TP) group, in the order given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from optimizer.errors import ClusterError

#: GPU types with measured profiles, by canonical name, and the short names users type.
GPU_ALIASES = {
    "a100": "a100-80gb",
    "a100-80gb": "a100-80gb",
    "h100": "h100-80gb",
    "h100-80gb": "h100-80gb",
    "h100-pcap": "h100-80gb-pcap",
    "h100-80gb-pcap": "h100-80gb-pcap",
}
#: Models with measured profiles.
MODELS = ("llama2-70b", "bloom-176b")
DEFAULT_MODEL = "llama2-70b"
#: The cluster used when none is given: the mixed fleet of the planner's benchmark.
DEFAULT_REPLICAS = "h100-tp4:4,a100-tp4:4"

_GROUP = re.compile(r"^(?:(?P<model>[^@\s]+)@)?(?P<gpu>[a-z0-9-]+?)-tp(?P<tp>\d+)(?::(?P<count>\d+))?$")


@dataclass(frozen=True)
class Replica:
    """One model replica on a tensor-parallel group of GPUs."""

    name: str
    gpu: str
    tp: int
    model: str

    @property
    def kind(self) -> str:
        """The replica type: replicas of one kind are interchangeable."""
        return f"{self.model}@{self.gpu}-tp{self.tp}"


@dataclass(frozen=True)
class Cluster:
    """An ordered set of uniquely named replicas."""

    replicas: tuple[Replica, ...]

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ClusterError("A cluster must have at least one replica.")
        names = [r.name for r in self.replicas]
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise ClusterError(f"Replica name {duplicate!r} is used twice; names must be unique.")

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.replicas]

    @property
    def models(self) -> list[str]:
        """Models served, each once, in order of first appearance."""
        return list(dict.fromkeys(r.model for r in self.replicas))

    def describe(self) -> str:
        """Inline spec of this cluster (as `parse_replicas` reads it), grouping consecutive
        replicas of one kind; models are named only when the cluster serves several."""
        named = len(self.models) > 1
        groups: list[list] = []
        for r in self.replicas:
            short = _short_gpu(r.gpu)
            kind = f"{r.model + '@' if named else ''}{short}-tp{r.tp}"
            if groups and groups[-1][0] == kind:
                groups[-1][1] += 1
            else:
                groups.append([kind, 1])
        return ",".join(f"{kind}:{count}" for kind, count in groups)


def parse_replicas(spec: str, *, model: str = DEFAULT_MODEL) -> Cluster:
    """Parse an inline cluster spec such as ``h100-tp4:4,a100-tp4:4``.

    `model` is served by groups that do not name one.
    """
    replicas: list[Replica] = []
    counters: dict[tuple[str, int], int] = {}
    groups = [g.strip() for g in spec.split(",")]
    if not spec.strip() or any(not g for g in groups):
        raise ClusterError(f"Replica spec {spec!r} has an empty group; write e.g. {DEFAULT_REPLICAS!r}.")
    for group in groups:
        match = _GROUP.match(group.lower())
        if not match:
            raise ClusterError(f"Replica group {group!r} is not of the form [MODEL@]GPU-tpN[:COUNT], e.g. 'h100-tp4:4'.")
        gpu = GPU_ALIASES.get(match["gpu"])
        if gpu is None:
            raise ClusterError(f"Unknown GPU {match['gpu']!r} in {group!r}; known: {', '.join(sorted(set(GPU_ALIASES.values())))}.")
        group_model = match["model"] or model
        if group_model not in MODELS:
            raise ClusterError(f"Unknown model {group_model!r} in {group!r}; known: {', '.join(MODELS)}.")
        tp = int(match["tp"])
        if tp not in (1, 2, 4, 8):
            raise ClusterError(f"Tensor-parallel degree {tp} in {group!r} must be 1, 2, 4 or 8.")
        count = 1 if match["count"] is None else int(match["count"])
        if count < 1:
            raise ClusterError(f"Replica count in {group!r} must be at least 1.")
        short = _short_gpu(gpu)
        for _ in range(count):
            k = counters.get((gpu, tp), 0)
            counters[(gpu, tp)] = k + 1
            replicas.append(Replica(f"{short}-tp{tp}-{k}", gpu, tp, group_model))
    return Cluster(tuple(replicas))


def _short_gpu(gpu: str) -> str:
    """The shortest name users can type for a GPU type (the first alias listed)."""
    return next(alias for alias, name in GPU_ALIASES.items() if name == gpu)
