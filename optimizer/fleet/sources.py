"""Sources of iteration times: which one a replica kind's profile comes from.

In order of precedence:

1. profiles the user gives (`--profiles FILE`: fitted measurements, or a calibration),
   keyed by (model, GPU, TP);
2. ``measured``: the bundled Splitwise measurements (vLLM of 2023), when the replica names
   no engine and they cover its model, GPU and TP (the first version's default fleet);
3. ``kernels``: NVIDIA's kernel tables for the replica's engine (default: the newest vLLM
   they mark current for that GPU), when the GPU and model have them;
4. ``roofline``: from the datasheet, for every other GPU, with its stated error band.

A replica's ``source`` other than "auto" asks for one of 2-4 and fails with one clear line
when it cannot be had.
"""

from __future__ import annotations

from optimizer.common.errors import OptimizerError, ProfileError
from optimizer.fleet.cluster import KV_CACHE_DTYPES, Replica
from optimizer.fleet.gpus import GPUS
from optimizer.fleet.kernels import kernel_profile
from optimizer.fleet.measurements import builtin_profiles
from optimizer.fleet.profile import Profile
from optimizer.fleet.roofline import roofline_profile


def profile_for(replica: Replica, profiles: dict[tuple[str, str, int], Profile] | None = None) -> Profile:
    """The performance profile of a replica, or one clear error naming the replica."""
    if profiles and (replica.model, replica.gpu, replica.tp) in profiles:
        return profiles[(replica.model, replica.gpu, replica.tp)]
    try:
        return default_profile(replica)
    except ProfileError as exc:
        raise OptimizerError(f"Replica {replica.name!r} ({replica.kind}): {exc}") from None


def default_profile(replica: Replica) -> Profile:
    """The profile of a replica kind from the bundled sources (module docstring, 2-4)."""
    gpu, shape = GPUS[replica.gpu], replica.shape
    measured = builtin_profiles().get((replica.model, gpu.measured_as, replica.tp)) if gpu.measured_as else None
    source = replica.source
    if source == "auto":
        if measured is not None and not replica.engine and replica.limits.kv_cache_dtype == "auto":
            source = "measured"
        elif gpu.kernel_system and shape.kernel_model:
            source = "kernels"
        else:
            source = "roofline"
    if source == "measured":
        if measured is None:
            known = ", ".join(f"{m}@{g}-tp{t}" for m, g, t in sorted(builtin_profiles()))
            raise ProfileError(f"no bundled measurements of it; measured: {known}.")
        return measured
    if source == "kernels":  # a GPU without tables is kernel_profile's error
        return kernel_profile(shape, gpu, replica.tp, replica.engine, replica.limits.kv_cache_dtype, replica.kv_capacity_tokens)
    return roofline_profile(shape, gpu, replica.tp, KV_CACHE_DTYPES[replica.limits.kv_cache_dtype])
