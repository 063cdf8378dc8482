"""Measured kernels, composed: NVIDIA's aiconfigurator-core tables sampled on a grid and fitted to the profile form.

aiconfigurator-core (`EngineHandle`) composes one engine iteration from measured GEMM,
attention, all-reduce and MoE kernel times of a (model, GPU, engine version, TP) and returns
milliseconds. It has no per-iteration CPU or scheduler overhead: that is what calibration
(`optimizer.fleet.calibration`) adds for a user's stack. Its times are sampled on the grids
below and fitted to `optimizer.fleet.profile`'s closed form, so the simulator and the bounds
keep their fast, monotone form; `held_out_error` measures the fit on points off the grid.

Sampled (each call 3-10 us; a profile takes about a second, then lives in a disk cache):

- prefill of B prompts of L tokens (B = 1: L = 32 .. 32768; B = 2..16 up to 16384 tokens);
- chunks of L tokens after P cached ones (the attention term, (P + L)^2 - P^2);
- decode steps of B = 1..256 sequences at contexts of 128..32768 tokens, up to the
  replica's KV capacity.

Quirks handled: a model id the package does not bundle would be downloaded, so only bundled
ids and local folders are compiled (never a network call); queries outside its tables are
extrapolated silently, so the grids stay inside what a replica can run; its log warnings are
silenced.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, replace
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from optimizer.common.errors import ProfileError
from optimizer.common.files import atomic_output
from optimizer.fleet.fit import fit_decode, fit_prefill, mape_pct, max_ape_pct
from optimizer.fleet.gpus import GPUS, Gpu
from optimizer.fleet.models import ModelShape
from optimizer.fleet.profile import Profile

ENGINES = ("vllm", "sglang", "trtllm")
DEFAULT_ENGINE = "vllm"
#: Bump when the grids or the fit change, so that cached profiles are rebuilt.
FIT_VERSION = 1
PREFILL_LENGTHS = (32, 64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768)
PREFILL_BATCHES = (1, 2, 4, 8, 16)
MAX_BATCH_PREFILL_TOKENS = 16384
CHUNKS = tuple((length, prefix) for length in (256, 512, 2048) for prefix in (512, 2048, 8192, 16384))
DECODE_BATCHES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
DECODE_CONTEXTS = (128, 512, 1024, 2048, 4096, 8192, 16384, 32768)
#: Off-grid points for `held_out_error`.
HELD_OUT_PREFILL = ((1, 100), (1, 300), (1, 700), (1, 1300), (1, 2500), (1, 5000), (1, 10000), (1, 20000), (3, 300), (3, 1300), (6, 700), (6, 2500))
HELD_OUT_DECODE = tuple((b, c) for b in (3, 6, 12, 20, 40, 56, 80, 160) for c in (300, 700, 1500, 3000, 6000, 12000))
KINK_GRID_TOKENS = (1024.0, 2048.0, 4096.0, 8192.0, 1e12)
RIDGE_GRID_TOKENS = tuple(float(t) for t in np.geomspace(32, 2048, 49))


def engine_versions(gpu: Gpu) -> dict[str, list[str]]:
    """Engine -> versions with kernel tables for this GPU (empty when it has none)."""
    if not gpu.kernel_system:
        return {}
    found = _engine_table().get(gpu.kernel_system, {})
    return {engine: found[engine]["versions"] for engine in ENGINES if engine in found}


@functools.cache
def _engine_table() -> dict[str, dict[str, dict]]:
    """system -> engine -> {"versions": [...], "current": version}; listing it parses some 200
    YAML files (about a second), so it is kept in the disk cache per package version."""
    path = _cache_dir() / f"engines-{_package_version()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    from aiconfigurator_core.sdk import perf_database

    _quiet()
    table: dict[str, dict[str, dict]] = {}
    for system, engines in sorted(perf_database.get_supported_databases().items()):
        for engine in ENGINES:
            if engines.get(engine):
                current = perf_database.get_version_slots(system, engine).get("current")
                table.setdefault(system, {})[engine] = {"versions": sorted(engines[engine]), "current": current}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(table, sort_keys=True))
    except OSError:
        pass
    return table


def resolve_engine(engine: str, gpu: Gpu) -> tuple[str, str]:
    """(engine, version) from "vllm" or "vllm==0.24.0"; the version defaults to the one the
    tables mark current for this GPU. One clear error for unknown names or versions."""
    name, _, version = (engine or DEFAULT_ENGINE).partition("==")
    name = name.strip().lower()
    if name not in ENGINES:
        close = difflib.get_close_matches(name, ENGINES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ProfileError(f"Unknown engine {name!r}; {hint}known: {', '.join(ENGINES)} (as NAME or NAME==VERSION).")
    versions = engine_versions(gpu)
    if not versions:
        have = ", ".join(g.aliases[0] for g in GPUS.values() if g.kernel_system)
        raise ProfileError(f"GPU {gpu.aliases[0]!r} has no kernel tables; GPUs with them: {have}. Use --source roofline or measurements.")
    if name not in versions:
        raise ProfileError(f"The kernel tables have no {name} data for {gpu.aliases[0]}; they have {', '.join(versions)}.")
    if not version:
        return name, _engine_table()[gpu.kernel_system][name]["current"]
    if version not in versions[name]:
        raise ProfileError(f"No kernel tables for {name}=={version} on {gpu.aliases[0]}; versions: {', '.join(versions[name])}.")
    return name, version


def kernel_profile(shape: ModelShape, gpu: Gpu, tp: int, engine: str = "", kv_cache_dtype: str = "auto",
                   kv_capacity_tokens: int = 0) -> Profile:
    """The fitted profile of a configuration from the kernel tables (cached in memory and on disk)."""
    name, version = resolve_engine(engine, gpu)
    if not shape.kernel_model:
        raise ProfileError(f"{shape.name} has no model config the kernel tables can compose (measurements only).")
    return _cached_profile(shape, gpu.name, tp, name, version, kv_cache_dtype, int(kv_capacity_tokens))


@functools.cache
def _cached_profile(shape: ModelShape, gpu_name: str, tp: int, engine: str, version: str, kv_dtype: str, capacity: int) -> Profile:
    gpu = GPUS[gpu_name]
    key = _cache_key(shape, gpu, tp, engine, version, kv_dtype, capacity)
    cached = _read_cache(key)
    if cached is not None:
        return cached
    handle = compile_engine(shape, gpu, tp, engine, version, kv_dtype)
    profile = fit_kernel_profile(handle, shape, gpu, tp, engine, version, capacity)
    _write_cache(key, profile)
    return profile


def compile_engine(shape: ModelShape, gpu: Gpu, tp: int, engine: str, version: str, kv_dtype: str = "auto"):
    """aiconfigurator-core's EngineHandle for a configuration, compiled without any download."""
    _quiet()
    from aiconfigurator_core.sdk.engine import EngineHandle

    options: dict[str, object] = {"backend_version": version, "tp_size": tp}
    if shape.is_moe:
        options.update(moe_tp_size=tp, moe_ep_size=1)  # tensor-parallel experts
    if kv_dtype == "fp8":
        options["kvcache_quant_mode"] = "fp8"
    try:
        return EngineHandle.compile(_model_path(shape), gpu.kernel_system, engine, **options)
    except Exception as exc:  # the package raises ValueError, RuntimeError and its own types
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProfileError(f"the kernel tables cannot compose {shape.name} on {tp} x {gpu.aliases[0]} with {engine}=={version}: {message}") from None


def fit_kernel_profile(handle, shape: ModelShape, gpu: Gpu, tp: int, engine: str, version: str, capacity: int) -> Profile:
    """Sample the engine on the grids and fit the closed form; errors are measured off the grid."""
    tokens, squares, prompts, y = _prefill_points(handle, training=True)
    ridge, kink, a = fit_prefill(tokens, squares, prompts, y, kinks=KINK_GRID_TOKENS, ridges=RIDGE_GRID_TOKENS)
    batch, context, z = _decode_points(handle, capacity, training=True)
    share = shape.experts_per_token / shape.num_experts if shape.is_moe else 0.0
    d = fit_decode(batch, context, z, share)
    profile = Profile(
        model=shape.name, gpu=gpu.name, tp=int(tp),
        prefill_base_ms=float(a[0]), prefill_ridge_tokens=float(ridge), prefill_ms_per_token=float(a[1]),
        prefill_kink_tokens=float(kink), prefill_ms_per_token_above_kink=float(a[2]),
        prefill_attention_ms_per_token_sq=float(a[3]), prefill_ms_per_prompt=float(a[4]),
        decode_base_ms=float(d[0]), decode_ms_per_seq=float(d[1]), decode_ms_per_context_token=float(d[2]),
        decode_ms_per_seq_sq=float(d[3]), decode_ms_per_expert_load=float(d[4]), decode_expert_share=share,
        source=f"kernels: aiconfigurator-core {_package_version()} tables, {engine} {version} on {gpu.kernel_system}",
    )
    errors = held_out_error(handle, profile, capacity)
    return replace(profile, prefill_error_pct=round(errors["prefill_mape_pct"], 3), decode_error_pct=round(errors["decode_mape_pct"], 3))


def held_out_error(handle, profile: Profile, capacity: int = 0) -> dict[str, float]:
    """MAPE and worst point of the closed form against the kernel tables, off the fitting grid."""
    tokens, squares, prompts, y = _prefill_points(handle, training=False)
    prefill = profile._prefill_ms(tokens, squares, prompts)
    batch, context, z = _decode_points(handle, capacity, training=False)
    decode = profile._decode_ms(batch, context)
    return {
        "prefill_mape_pct": mape_pct(prefill, y), "prefill_worst_pct": max_ape_pct(prefill, y),
        "decode_mape_pct": mape_pct(decode, z), "decode_worst_pct": max_ape_pct(decode, z),
    }


def _prefill_points(handle, training: bool):
    if training:
        shapes = [(b, n) for b in PREFILL_BATCHES for n in PREFILL_LENGTHS if b == 1 or b * n <= MAX_BATCH_PREFILL_TOKENS]
        chunks = list(CHUNKS)
    else:
        shapes, chunks = list(HELD_OUT_PREFILL), [(700, 3000), (1500, 6000)]
    rows = [(b * n, b * n * n, b, handle.predict_prefill_latency(b, n)) for b, n in shapes]
    rows += [(n, (p + n) ** 2 - p**2, 1, handle.predict_prefill_latency(1, p + n, p)) for n, p in chunks]
    return tuple(np.array(column, dtype=float) for column in zip(*rows))


def _decode_points(handle, capacity: int, training: bool):
    grid = [(b, c) for b in DECODE_BATCHES for c in DECODE_CONTEXTS] if training else list(HELD_OUT_DECODE)
    # Points a replica cannot hold (more KV tokens than its cache) are extrapolations: left out.
    grid = [(b, c) for b, c in grid if not capacity or b * c <= capacity] or grid[:1]
    rows = [(b, b * c, handle.decode_step_latency(b, c - 1, 1)) for b, c in grid]
    return tuple(np.array(column, dtype=float) for column in zip(*rows))


def _model_path(shape: ModelShape) -> str:
    """What to compile: a bundled id, or a folder holding config.json (made from a bundled file)."""
    kind, _, where = shape.kernel_model.partition(":")
    if kind == "package":
        text = resources.files("optimizer.fleet").joinpath(where).read_text()
    elif kind == "aiconfigurator":
        text = resources.files("aiconfigurator_core").joinpath(where).read_text()
    else:
        return shape.kernel_model  # a bundled id, or the user's folder
    folder = _cache_dir() / "models" / hashlib.sha256(text.encode()).hexdigest()[:16]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "config.json").is_file():
            _atomic_write(folder / "config.json", text)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="fleet-optimizer-model-"))
        (folder / "config.json").write_text(text)
    return str(folder)


# The disk cache: one JSON file per configuration, keyed by everything the profile depends on.


def _cache_dir() -> Path:
    return Path(os.environ.get("FLEET_OPTIMIZER_CACHE") or Path.home() / ".cache" / "fleet-optimizer")


def _cache_key(shape, gpu, tp, engine, version, kv_dtype, capacity) -> str:
    parts = [FIT_VERSION, _package_version(), asdict(shape), gpu.kernel_system, tp, engine, version, kv_dtype, capacity]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _read_cache(key: str) -> Profile | None:
    try:
        data = json.loads((_cache_dir() / "profiles" / f"{key}.json").read_text())
        return Profile(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_cache(key: str, profile: Profile) -> None:
    try:
        folder = _cache_dir() / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / f"{key}.json", json.dumps(asdict(profile), sort_keys=True))
    except OSError:
        pass  # a cache that cannot be written only costs time


def _atomic_write(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


@functools.cache
def _package_version() -> str:
    return metadata.version("aiconfigurator-core")


def _quiet() -> None:
    # It logs low-fidelity fallback warnings on every first load, whatever the model.
    logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
