"""Candidate replica kinds a fleet may be rented from: kind, price, availability.

A candidates file is TOML; prices are the user's (no price is built into the code)::

    [prices]                      # optional, free text: where the prices come from
    source = "https://docs.runpod.io/serverless/pricing"
    date = "2026-12-05"

    [[candidates]]
    kind = "llama-3.1-8b@h100-tp1"   # MODEL@GPU-tpN, as in --replicas
    price_per_gpu_hour = 4.18        # USD per GPU per hour (a replica costs tp times this)
    available = 16                   # at most this many replicas
    minimum = 0                      # optional: at least this many
    engine = "vllm==0.24.0"          # optional, as in cluster files
    source = "kernels"               # optional: auto, measured, kernels, roofline

`fleet_cluster` turns chosen counts into a `Cluster` (replicas named as in cluster files),
and `write_fleet` writes it as a cluster file that `--replicas fleet.toml` reads.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from optimizer.common.errors import ClusterError, InputError, OptimizerError
from optimizer.common.files import atomic_output
from optimizer.fleet.cluster import Cluster, Replica, parse_replicas
from optimizer.fleet.gpus import short_name

_TOP_KEYS = ("prices", "candidates")
_CANDIDATE_KEYS = ("kind", "price_per_gpu_hour", "available", "minimum", "engine", "source")


@dataclass(frozen=True)
class Candidate:
    """A replica kind that may be rented: `available` replicas at most, `minimum` at least."""

    replica: Replica  # a template; its name is not used
    price_per_gpu_hour: float
    available: int
    minimum: int = 0

    @property
    def kind(self) -> str:
        return self.replica.kind

    @property
    def label(self) -> str:
        """Short name for tables: GPU-tpN (with the engine when it is not the default)."""
        extra = f"/{self.replica.engine}" if self.replica.engine else ""
        return f"{short_name(self.replica.gpu)}-tp{self.replica.tp}{extra}"

    @property
    def price_per_replica_hour(self) -> float:
        return self.price_per_gpu_hour * self.replica.tp

    def __post_init__(self) -> None:
        for name in ("price_per_gpu_hour", "available", "minimum"):
            if getattr(self, name) < 0:
                raise OptimizerError(f"{name} of {self.kind} must be at least 0, got {getattr(self, name)}.")
        if self.minimum > self.available:
            raise OptimizerError(f"minimum of {self.kind} ({self.minimum}) is more than its available ({self.available}).")


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def load_candidates(path: str | Path, *, model: str | None = None) -> list[Candidate]:
    """Read and check a candidates file (module docstring). `model` serves kinds that name none.

    Raises:
        InputError: unreadable TOML, unknown keys (with a did-you-mean), unknown models or
            GPUs, missing fields, negative prices or counts, a kind listed twice.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the candidates file ({exc.strerror}).", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc}).", path=path) from None
    for key in data:
        if key not in _TOP_KEYS:
            raise InputError(f"unknown key {key!r}; {_did_you_mean(key, _TOP_KEYS)}known: {', '.join(_TOP_KEYS)}.", path=path)
    groups = data.get("candidates")
    if not isinstance(groups, list) or not groups:
        raise InputError("needs a non-empty list of [[candidates]] tables.", path=path)
    found: list[Candidate] = []
    for number, group in enumerate(groups, start=1):
        field = f"candidate {number}"
        if not isinstance(group, dict):
            raise InputError("must be a table of kind, price_per_gpu_hour, available.", path=path, field=field)
        for key in group:
            if key not in _CANDIDATE_KEYS:
                raise InputError(f"unknown key {key!r}; {_did_you_mean(key, _CANDIDATE_KEYS)}known: {', '.join(_CANDIDATE_KEYS)}.",
                                 path=path, field=field)
        for key in ("kind", "price_per_gpu_hour", "available"):
            if key not in group:
                raise InputError(f"missing {key!r}.", path=path, field=field)
        for key in ("kind", "engine", "source"):
            if key in group and not isinstance(group[key], str):
                raise InputError(f"{key} must be text, got {group[key]!r}.", path=path, field=field)
        numbers = {}
        for key, whole in (("price_per_gpu_hour", False), ("available", True), ("minimum", True)):
            value = group.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not float(value).is_integer()):
                raise InputError(f"{key} must be {'a whole number' if whole else 'a number'}, got {value!r}.", path=path, field=field)
            if value < 0:
                raise InputError(f"{key} must be at least 0, got {value!r}.", path=path, field=field)
            numbers[key] = int(value) if whole else float(value)
        spec = group["kind"].strip()
        if ":" in spec or "," in spec:
            raise InputError(f"kind {spec!r} must be one MODEL@GPU-tpN, without a count.", path=path, field=field)
        try:
            template = parse_replicas(spec, engine=group.get("engine", ""), source=group.get("source", "auto"),
                                      **({"model": model} if model else {})).replicas[0]
            candidate = Candidate(template, numbers["price_per_gpu_hour"], numbers["available"], numbers["minimum"])
        except OptimizerError as exc:
            raise InputError(str(exc), path=path, field=field) from None
        if any(c.kind == candidate.kind for c in found):
            raise InputError(f"kind {candidate.kind} is listed twice.", path=path, field=field)
        found.append(candidate)
    if not any(c.available for c in found):
        raise InputError("every candidate has available = 0; no fleet can be rented.", path=path)
    return found


def fleet_cluster(candidates: list[Candidate], counts) -> Cluster:
    """The cluster of `counts[k]` replicas of each candidate (named GPU-tpN-K, as cluster files name them)."""
    replicas: list[Replica] = []
    used: dict[str, int] = {}
    for candidate, count in zip(candidates, counts):
        template = candidate.replica
        stem = f"{short_name(template.gpu)}-tp{template.tp}"
        for _ in range(int(count)):
            k = used.get(stem, 0)
            used[stem] = k + 1
            replicas.append(dataclasses.replace(template, name=f"{stem}-{k}"))
    if not replicas:
        raise ClusterError("The fleet has no replicas.")
    return Cluster(tuple(replicas))


def fleet_toml(candidates: list[Candidate], counts, header: list[str]) -> str:
    """The fleet as a cluster file (`optimizer.fleet.cluster.load_cluster`), `header` as comments."""
    lines = [f"# {line}" for line in header]
    for candidate, count in zip(candidates, counts):
        if not count:
            continue
        r = candidate.replica
        lines += ["", "[[replicas]]", f'model = "{r.model}"', f'gpu = "{short_name(r.gpu)}"', f"tp = {r.tp}", f"count = {int(count)}"]
        lines += [f'engine = "{r.engine}"'] if r.engine else []
        lines += [f'source = "{r.source}"'] if r.source != "auto" else []
        lines += [f"# {candidate.price_per_gpu_hour:g} USD per GPU-hour (from the candidates file)"]
    return "\n".join(lines) + "\n"


def write_fleet(path: str | Path, candidates: list[Candidate], counts, header: list[str]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(fleet_toml(candidates, counts, header))
