"""`solvers`, `models`, `gpus`: what this installation can plan with."""

from __future__ import annotations

import typer
from rich.table import Table

import optimizer
from optimizer.fleet.kernels import engine_versions
from commands.common import (
    out,
    user_errors,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py solvers")
def solvers() -> None:
    """List the planning methods available on this machine."""
    for name, description in optimizer.solvers().items():
        out.print(f"{name:13} {description}")


@app.command(epilog="Example: python cli.py models")
def models() -> None:
    """List the catalog's models: parameters, layers, KV heads, head dim, context, and what has data."""
    table = Table("model", "params B", "active B", "layers", "KV heads", "head dim", "context", "KV KiB/token", "kind", "config")
    with user_errors():
        for name in optimizer.catalog_names():
            m = optimizer.find_model(name)
            table.add_row(name, f"{m.num_params / 1e9:.1f}", f"{(m.num_active_params or m.num_params) / 1e9:.1f}", str(m.num_layers),
                          str(m.num_kv_heads), str(m.head_dim), f"{m.context_tokens:,}", f"{m.kv_bytes_per_token / 1024:.0f}",
                          f"MoE {m.experts_per_token}/{m.num_experts}" if m.is_moe else "dense", m.source.split(" (")[0])
    out.print(table)
    out.print("Or give a path to a Hugging Face config.json (or its folder) as MODEL: MODEL@GPU-tpN.")


@app.command(epilog="Example: python cli.py gpus")
def gpus() -> None:
    """List GPU types: memory, peak speeds, interconnect, which engines have kernel tables, and sources."""
    table = Table("gpu", "memory GiB", "bf16 TFLOP/s", "HBM GB/s", "interconnect", "kernel tables", "measured", "source")
    with user_errors():
        for g in optimizer.GPUS.values():
            versions = engine_versions(g)
            kernels = "; ".join(f"{e} {', '.join(v)}" for e, v in versions.items()) or "- (roofline)"
            table.add_row(g.aliases[0], f"{g.memory_gib:g}", f"{g.bf16_tflops:g}", f"{g.hbm_gb_per_s:g}", g.interconnect, kernels,
                          "llama2-70b, bloom-176b" if g.measured_as else "-", g.source)
    out.print(table)
