"""GPU types: memory, peak speeds, interconnect, and where their iteration times come from.

Each GPU type lists its datasheet figures (dense bf16 tensor TFLOP/s, HBM bandwidth, memory)
with their source, and which performance sources have data for it:

- ``measured``: the Splitwise measurements bundled in `data/` (llama2-70b and bloom-176b on
  A100-80GB and H100-80GB, vLLM of 2023);
- ``kernels``: NVIDIA's measured kernel tables (`aiconfigurator-core`), by its system id;
- ``roofline``: every GPU, from the figures below and efficiency factors fitted where the
  kernel tables exist (`optimizer.fleet.roofline`), with the error band measured there.

Memory is the usable capacity the engine sizes its KV cache from (GiB), as the kernel tables'
system files give it (nvidia-smi) where they have the part, else the datasheet's.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from optimizer.common.errors import ClusterError

_AIC = "aiconfigurator-core 0.12 systems/{}.yaml (NVIDIA datasheet values)"


@dataclass(frozen=True)
class Gpu:
    """One GPU type; `aliases` are the names users type (the first is used in replica names)."""

    name: str
    aliases: tuple[str, ...]
    memory_gib: float
    bf16_tflops: float  # dense tensor-core peak
    hbm_gb_per_s: float
    interconnect: str  # "nvlink" or "pcie": what tensor-parallel all-reduce runs over
    interconnect_gb_per_s: float  # per GPU, one direction
    source: str
    #: aiconfigurator-core system id with kernel tables, or "" when it has none.
    kernel_system: str = ""
    #: Splitwise hardware name with bundled measurements, or "".
    measured_as: str = ""


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        # The Splitwise measurements' two parts (80 GB SXM on Azure ND A100 v4 / ND H100 v5).
        Gpu("a100-80gb", ("a100", "a100-sxm", "a100-80gb"), 80.0, 312, 2039, "nvlink", 300,
            _AIC.format("a100_sxm"), "a100_sxm", "a100-80gb"),
        Gpu("h100-80gb", ("h100", "h100-sxm", "h100-80gb"), 80.0, 989, 3350, "nvlink", 450,
            _AIC.format("h100_sxm"), "h100_sxm", "h100-80gb"),
        Gpu("h100-80gb-pcap", ("h100-pcap", "h100-80gb-pcap"), 80.0, 989, 3350, "nvlink", 450,
            "Splitwise (ISCA'24): H100-80GB power-capped; kernel tables of the uncapped part", "h100_sxm", "h100-80gb-pcap"),
        Gpu("h200", ("h200", "h200-sxm"), 141.0, 989, 4800, "nvlink", 450, _AIC.format("h200_sxm"), "h200_sxm"),
        Gpu("b200", ("b200", "b200-sxm"), 180.0, 2250, 7700, "nvlink", 900, _AIC.format("b200_sxm"), "b200_sxm"),
        Gpu("b300", ("b300", "b300-sxm"), 268.6, 2250, 7750, "nvlink", 900, _AIC.format("b300_sxm"), "b300_sxm"),
        Gpu("gb200", ("gb200",), 185.0, 2500, 8000, "nvlink", 900, _AIC.format("gb200"), "gb200"),
        Gpu("l40s", ("l40s",), 45.0, 362, 864, "pcie", 32, _AIC.format("l40s"), "l40s"),
        Gpu("rtx-pro-6000", ("rtx-pro-6000", "rtx6000-pro"), 95.6, 468, 1792, "pcie", 64,
            _AIC.format("rtx_pro_6000_server"), "rtx_pro_6000_server"),
        # No kernel tables: roofline only.
        Gpu("a100-pcie", ("a100-pcie",), 80.0, 312, 1935, "pcie", 32, _AIC.format("a100_pcie")),
        Gpu("h100-pcie", ("h100-pcie",), 80.0, 756, 2000, "pcie", 64, _AIC.format("h100_pcie")),
        Gpu("l4", ("l4",), 24.0, 121, 300, "pcie", 32, _AIC.format("l4")),
        Gpu("a30", ("a30",), 24.0, 165, 933, "pcie", 32, _AIC.format("a30")),
        Gpu("a10g", ("a10g",), 24.0, 70, 600, "pcie", 32,
            "AWS EC2 G5 documentation and NVIDIA A10 datasheet (A10G is an AWS-only part; ~70 TFLOP/s bf16 dense)"),
        Gpu("mi300x", ("mi300x",), 192.0, 1307, 5300, "pcie", 64,
            "AMD Instinct MI300X datasheet (1307 TFLOP/s bf16 dense, 5.3 TB/s, 192 GB; Infinity Fabric counted as PCIe-class here)"),
    )
}

#: Short names users type for each GPU type.
GPU_ALIASES: dict[str, str] = {alias: g.name for g in GPUS.values() for alias in g.aliases}


def find_gpu(name: str, where: str = "") -> Gpu:
    """The GPU type a user's name means, or one clear error with the known names."""
    key = GPU_ALIASES.get(name.lower())
    if key is None:
        close = difflib.get_close_matches(name.lower(), list(GPU_ALIASES), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        place = f" in {where}" if where else ""
        raise ClusterError(f"Unknown GPU {name!r}{place}; {hint}known: {', '.join(g.aliases[0] for g in GPUS.values())}.")
    return GPUS[key]


def short_name(gpu: str) -> str:
    """The name used in replica names: the GPU type's first alias."""
    return GPUS[gpu].aliases[0]
