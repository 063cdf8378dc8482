"""Clusters: the replicas a plan assigns requests to, with their memory and engine limits.

A replica is one copy of a model on a tensor-parallel group of `tp` GPUs of one type. Its
KV-cache capacity follows from the model's shape and the GPUs' memory, as vLLM sizes it:

    kv_bytes_per_token  = 2 (K and V) x layers x kv_heads x head_dim x kv_dtype_bytes   (the model's dtype, or 1 for fp8)
    kv_capacity_tokens  = floor((tp x gpu_memory x gpu_memory_utilization
                                 - weight_bytes - tp x activation_reserve) / kv_bytes_per_token)

rounded down to whole blocks of `block_size_tokens`. A model whose weights do not fit in
the usable memory is an error, not a zero-capacity replica. Models come from
`optimizer.fleet.models` (a catalog name or a config.json path), GPUs from
`optimizer.fleet.gpus`; a replica also names its engine and performance source
(`optimizer.fleet.sources`), which are part of its kind.

Clusters are written inline as comma-separated groups ``[MODEL@]GPU-tpN[:COUNT]``, for
example ``h100-tp4:4,a100-tp4:4`` (four llama2-70b replicas on 4 H100s each and four on
4 A100s each), ``llama2-70b@h100-tp4:2,bloom-176b@h100-tp8:1`` or
``llama-3.1-8b@l40s-tp1:4``; or in a TOML or JSON
file with one ``[[replicas]]`` table per group (see `load_cluster`). Replicas are named
``GPU-tpN-K`` with K counting from 0 within each (GPU, TP) group, in the order given,
unless the file gives a ``name`` prefix.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from optimizer.common.errors import ClusterError
from optimizer.fleet.gpus import GPUS, Gpu, find_gpu, short_name
from optimizer.fleet.models import DEFAULT_MODEL, ModelShape, find_model

GIB = 2**30

#: The cluster used when none is given: the mixed fleet of the planner's benchmark.
DEFAULT_REPLICAS = "h100-tp4:4,a100-tp4:4"
#: Where a replica's iteration times come from (`optimizer.fleet.sources`).
SOURCES = ("auto", "measured", "kernels", "roofline")
KV_CACHE_DTYPES = {"auto": 0, "fp8": 1}  # bytes per value; 0 = the model's dtype

_GROUP = re.compile(r"^(?:(?P<model>[^@\s]+)@)?(?P<gpu>[A-Za-z0-9-]+?)-tp(?P<tp>\d+)(?::(?P<count>\d+))?$")


@dataclass(frozen=True)
class EngineLimits:
    """Serving-engine settings of a replica (vLLM's names and, where sensible, defaults)."""

    #: Most sequences running at once. The measured profiles reach batch 64, so planning
    #: beyond it would extrapolate the measurements.
    max_num_seqs: int = 64
    #: Token budget of one iteration (prefill tokens plus one per decoding sequence).
    max_num_batched_tokens: int = 8192
    #: Share of GPU memory the engine may use for weights, activations and KV cache.
    gpu_memory_utilization: float = 0.9
    #: Memory per GPU kept for activations of the largest iteration.
    activation_reserve_gib: float = 2.0
    #: KV cache is allocated in blocks of this many tokens.
    block_size_tokens: int = 16
    #: KV-cache element type: "auto" (the model's dtype) or "fp8" (vLLM's --kv-cache-dtype fp8).
    kv_cache_dtype: str = "auto"


@dataclass(frozen=True)
class Replica:
    """One model replica on a tensor-parallel group of GPUs."""

    name: str
    gpu: str
    tp: int
    model: str
    limits: EngineLimits = EngineLimits()
    #: Serving engine and version of the kernel tables, "vllm==0.24.0"; "" = the source's default.
    engine: str = ""
    #: Where its iteration times come from: one of SOURCES.
    source: str = "auto"

    @property
    def kind(self) -> str:
        """The replica type: replicas of one kind are interchangeable."""
        extras = [self.engine] if self.engine else []
        extras += [self.source] if self.source != "auto" else []
        extras += ["kv-" + self.limits.kv_cache_dtype] if self.limits.kv_cache_dtype != "auto" else []
        return f"{self.model}@{self.gpu}-tp{self.tp}" + "".join("/" + e for e in extras)

    @property
    def shape(self) -> ModelShape:
        return find_model(self.model)

    @property
    def kv_capacity_tokens(self) -> int:
        return kv_capacity_tokens(self.shape, GPUS[self.gpu], self.tp, self.limits)


def kv_capacity_tokens(model: ModelShape, gpu: Gpu, tp: int, limits: EngineLimits) -> int:
    """Tokens of KV cache a replica holds (whole blocks); negative if the weights do not fit."""
    usable = tp * gpu.memory_gib * GIB * limits.gpu_memory_utilization - tp * limits.activation_reserve_gib * GIB
    kv_bytes = model.kv_bytes_per_token_at(KV_CACHE_DTYPES[limits.kv_cache_dtype] or model.dtype_bytes)
    tokens = (usable - model.weight_bytes) / kv_bytes
    if tokens < 0:
        return math.floor(tokens)
    return int(tokens // limits.block_size_tokens) * limits.block_size_tokens


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

    @property
    def kinds(self) -> list[str]:
        """Replica kinds, each once, in order of first appearance."""
        return list(dict.fromkeys(r.kind for r in self.replicas))

    @property
    def first_of_each_kind(self) -> list[Replica]:
        """The first replica of each kind, in the order of `kinds` (replicas of a kind are interchangeable)."""
        first: dict[str, Replica] = {}
        for r in self.replicas:
            first.setdefault(r.kind, r)
        return list(first.values())

    def describe(self) -> str:
        """Inline spec of this cluster (as `parse_replicas` reads it), grouping consecutive
        replicas of one kind; models are named only when the cluster serves several."""
        named = len(self.models) > 1
        groups: list[list] = []
        for r in self.replicas:
            kind = f"{r.model + '@' if named else ''}{short_name(r.gpu)}-tp{r.tp}"
            if groups and groups[-1][0] == kind:
                groups[-1][1] += 1
            else:
                groups.append([kind, 1])
        return ",".join(f"{kind}:{count}" for kind, count in groups)


def _group(
    where: str,
    gpu_name: str,
    tp: int,
    count: int,
    model: str,
    limits: EngineLimits,
    counters: dict[str, int],
    prefix: str | None = None,
    engine: str = "",
    source: str = "auto",
) -> list[Replica]:
    """Validated replicas of one group; `where` names the group in error messages."""
    gpu = find_gpu(gpu_name, where).name
    shape = find_model(model, where)
    model = shape.name
    if source not in SOURCES:
        raise ClusterError(f"Unknown performance source {source!r} in {where}; choose one of: {', '.join(SOURCES)}.")
    if limits.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ClusterError(f"kv_cache_dtype {limits.kv_cache_dtype!r} in {where} must be one of: {', '.join(KV_CACHE_DTYPES)}.")
    if tp not in (1, 2, 4, 8):
        raise ClusterError(f"Tensor-parallel degree {tp} in {where} must be 1, 2, 4 or 8.")
    if not 1 <= count <= MAX_REPLICAS:
        raise ClusterError(f"Replica count in {where} must be from 1 to {MAX_REPLICAS:,}, got {count:,}.")
    if not 0 < limits.gpu_memory_utilization <= 1:
        raise ClusterError(f"gpu_memory_utilization in {where} must be in (0, 1].")
    for name, most in LIMIT_RANGES.items():
        if not 1 <= getattr(limits, name) <= most:
            raise ClusterError(f"{name} in {where} must be from 1 to {most:,}, got {getattr(limits, name):,}.")
    if not 0 <= limits.activation_reserve_gib < GPUS[gpu].memory_gib:
        raise ClusterError(f"activation_reserve_gib in {where} must be at least 0 and below the GPU's {GPUS[gpu].memory_gib:g} GiB.")
    memory = GPUS[gpu]
    capacity = kv_capacity_tokens(shape, memory, tp, limits)
    if capacity < limits.block_size_tokens:
        usable = tp * (memory.memory_gib * limits.gpu_memory_utilization - limits.activation_reserve_gib)
        fits = [t for t in (1, 2, 4, 8) if kv_capacity_tokens(shape, memory, t, limits) >= limits.block_size_tokens]
        hint = f"the smallest tp that fits is {fits[0]}" if fits else f"it fits at no tp up to 8 on {gpu}"
        raise ClusterError(
            f"{model} does not fit on {tp} x {gpu} in {where}: its weights take {shape.weight_bytes / GIB:.1f} GiB "
            f"and {usable:.1f} GiB is usable, leaving no room for a KV cache; {hint}."
        )
    replicas = []
    stem = prefix or f"{short_name(gpu)}-tp{tp}"
    for _ in range(count):
        k = counters.get(stem, 0)
        counters[stem] = k + 1
        replicas.append(Replica(f"{stem}-{k}", gpu, tp, model, limits, engine, source))
    return replicas


def parse_replicas(spec: str, *, model: str = DEFAULT_MODEL, engine: str = "", source: str = "auto") -> Cluster:
    """Parse an inline cluster spec such as ``h100-tp4:4,a100-tp4:4`` or ``llama-3.1-8b@l40s-tp1:4``.

    `model` is served by groups that do not name one; `engine` ("vllm==0.24.0") and
    `source` (one of SOURCES) apply to every group.
    """
    replicas: list[Replica] = []
    counters: dict[str, int] = {}
    groups = [g.strip() for g in spec.split(",")]
    if not spec.strip() or any(not g for g in groups):
        raise ClusterError(f"Replica spec {spec!r} has an empty group; write e.g. {DEFAULT_REPLICAS!r}.")
    for group in groups:
        match = _GROUP.match(group)
        if match and match["count"] is not None and len(match["count"]) > 6:
            raise ClusterError(f"Replica count in {group!r} must be from 1 to {MAX_REPLICAS:,}.")
        if not match:
            raise ClusterError(f"Replica group {group!r} is not of the form [MODEL@]GPU-tpN[:COUNT], e.g. 'h100-tp4:4'.")
        count = 1 if match["count"] is None else int(match["count"])
        where = repr(group)
        replicas += _group(where, match["gpu"], int(match["tp"]), count, match["model"] or model, EngineLimits(), counters,
                           engine=engine, source=source)
        if len(replicas) > MAX_REPLICAS:
            raise ClusterError(f"Replica spec {spec!r} has more than {MAX_REPLICAS:,} replicas in all.")
    return Cluster(tuple(replicas))


#: Largest count of one replica group, and of a whole cluster: far above any real fleet,
#: low enough that a typo (1e8) is an error and not an hour of building replicas.
MAX_REPLICAS = 4096
#: Largest engine settings accepted (vLLM's own defaults are 256, 8192 and 16).
LIMIT_RANGES = {"max_num_seqs": 16_384, "max_num_batched_tokens": 2**21, "block_size_tokens": 1024}

_LIMIT_FIELDS = {f.name: f.type for f in fields(EngineLimits)}
_GROUP_KEYS = {"gpu", "tp", "count", "model", "name", "engine", "source"} | set(_LIMIT_FIELDS)


def load_cluster(path: str | Path, *, engine: str = "", source: str = "auto") -> Cluster:
    """Read a cluster file: TOML or JSON, one entry per group of identical replicas.

    TOML::

        [[replicas]]
        gpu = "h100"      # a100, h100, h100-pcap
        tp = 4
        count = 4         # default 1
        model = "llama2-70b"   # default llama2-70b; a catalog name or a config.json path
        engine = "vllm==0.24.0"  # optional; default: the source's own
        source = "auto"        # auto, measured, kernels, roofline
        max_num_seqs = 64      # optional engine limits, see EngineLimits
        kv_cache_dtype = "fp8" # optional; default auto (the model's dtype)
        name = "fast"          # optional prefix of the replica names

    `engine` and `source` given here apply to groups that do not name their own.

    JSON: ``{"replicas": [{"gpu": "h100", "tp": 4, "count": 4}, ...]}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ClusterError(f"{path}: not a text file (a cluster file is TOML or JSON).") from None
    except OSError as exc:
        raise ClusterError(f"{path}: cannot read the cluster file ({exc.strerror}).") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClusterError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({exc}).") from None
    groups = data.get("replicas") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ClusterError(f"{path}: needs a non-empty list 'replicas' of replica groups.")
    replicas: list[Replica] = []
    counters: dict[str, int] = {}
    for number, group in enumerate(groups, start=1):
        where = f"{path} replica group {number}"
        if not isinstance(group, dict):
            raise ClusterError(f"{where}: must be a table of gpu, tp, count, model.")
        unknown = sorted(set(group) - _GROUP_KEYS)
        if unknown:
            raise ClusterError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(_GROUP_KEYS))}.")
        for key in ("gpu", "tp"):
            if key not in group:
                raise ClusterError(f"{where}: missing field {key!r}.")
        for key in ("model", "engine", "source", "kv_cache_dtype", "name"):
            if key in group and not isinstance(group[key], str):
                raise ClusterError(f"{where}: {key} must be text, got {group[key]!r}.")
        for key, kind in (("tp", int), ("count", int), *((k, t) for k, t in _LIMIT_FIELDS.items() if k != "kv_cache_dtype")):
            if key in group:
                want = int if kind in (int, "int") else float
                value = group[key]
                if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                        or (want is int and not float(value).is_integer())):
                    raise ClusterError(f"{where}: {key} must be {'a whole number' if want is int else 'a number'}, got {value!r}.")
        limits = EngineLimits(**{k: group[k] for k in _LIMIT_FIELDS if k in group})
        replicas += _group(
            where,
            str(group["gpu"]),
            int(group["tp"]),
            int(group.get("count", 1)),
            str(group.get("model", DEFAULT_MODEL)),
            limits,
            counters,
            prefix=group.get("name"),
            engine=group.get("engine", engine),
            source=group.get("source", source),
        )
    if len(replicas) > MAX_REPLICAS:
        raise ClusterError(f"{path}: {len(replicas):,} replicas in all; at most {MAX_REPLICAS:,} are supported.")
    return Cluster(tuple(replicas))


def resolve_cluster(spec: str, *, engine: str = "", source: str = "auto") -> Cluster:
    """A cluster from a file path (``.toml`` or ``.json``) or an inline spec."""
    if spec.endswith((".toml", ".json")) or Path(spec).is_file():
        return load_cluster(spec, engine=engine, source=source)
    return parse_replicas(spec, engine=engine, source=source)
