"""Roofline fallback: iteration times from a GPU's datasheet and a model's shape, for GPUs without kernel tables.

Per GPU of a tensor-parallel group of t GPUs (peak F = e_c x bf16 FLOP/s, bandwidth
M = e_m x HBM bytes/s, link L bytes/s; N active parameters per token, W weight bytes,
W_e of them in experts, h hidden size, l layers)::

    a1  = 2 N / t / F + c          per prompt token: its GEMM FLOPs, plus all-reduce traffic
    T_r = (W / t / M) / a1         below it the weight read, not the FLOPs, bounds the pass
    a3  = 2 head_dim heads l / t / F   attention FLOPs per squared token (causal: half the pairs, 4 FLOPs each)
    d0  = (W - W_e) / t / M + o    the weights read once per step, plus a fixed overhead o
    d1  = 2 N / t / F + c          per sequence
    d2  = kv_bytes_per_token / t / M
    d4  = W_e / t / M, f = experts per token / experts
    c   = l x 2 all-reduces x 2 (t - 1) / t x h x 2 bytes / L        (0 at t = 1)
    a0 = o, a2 = a4 = d3 = 0

The efficiency factors e_c, e_m and the overhead o are fitted to the kernel tables on the
GPUs that have them (`benchmarks/performance_model.py --only roofline` refits them and
measures the error per GPU, which `ERROR_BAND_PCT` states). A roofline is a rough guide:
every output that uses it says so.
"""

from __future__ import annotations

from optimizer.fleet.gpus import Gpu
from optimizer.fleet.models import ModelShape
from optimizer.fleet.profile import Profile

#: Fitted on the kernel tables (vLLM 0.24.0; 0.14.0 on A100) of 6 GPUs x 3 models (benchmark above).
COMPUTE_EFFICIENCY = 0.70
BANDWIDTH_EFFICIENCY = 0.80
OVERHEAD_MS = 1.0
#: Worst GPU's MAPE against its kernel tables when left out of the fit (prefill, decode; percent).
ERROR_BAND_PCT = (40.0, 16.0)


def roofline_profile(shape: ModelShape, gpu: Gpu, tp: int, kv_dtype_bytes: int = 0,
                     compute_efficiency: float = COMPUTE_EFFICIENCY, bandwidth_efficiency: float = BANDWIDTH_EFFICIENCY,
                     overhead_ms: float = OVERHEAD_MS) -> Profile:
    """The module docstring's profile of a configuration."""
    flops = gpu.bf16_tflops * 1e12 * compute_efficiency
    bandwidth = gpu.hbm_gb_per_s * 1e9 * bandwidth_efficiency
    link = gpu.interconnect_gb_per_s * 1e9
    active = shape.num_active_params or shape.num_params
    expert_bytes = (shape.num_params - active) * shape.dtype_bytes * (shape.num_experts / max(shape.num_experts - shape.experts_per_token, 1)) if shape.is_moe else 0.0
    expert_bytes = min(expert_bytes, shape.weight_bytes)
    comm_s = shape.num_layers * 2 * 2 * (tp - 1) / tp * shape.hidden_size * 2 / link if tp > 1 else 0.0
    per_token_s = 2 * active / tp / flops + comm_s
    weight_read_s = shape.weight_bytes / tp / bandwidth
    heads = shape.num_heads or shape.num_kv_heads
    kv_bytes = shape.kv_bytes_per_token_at(kv_dtype_bytes or shape.dtype_bytes)
    ms = 1e3
    return Profile(
        model=shape.name, gpu=gpu.name, tp=int(tp),
        prefill_base_ms=overhead_ms,
        prefill_ridge_tokens=weight_read_s / per_token_s,
        prefill_ms_per_token=per_token_s * ms,
        prefill_kink_tokens=1e12,
        prefill_ms_per_token_above_kink=0.0,
        prefill_attention_ms_per_token_sq=2 * shape.head_dim * heads * shape.num_layers / tp / flops * ms,
        prefill_ms_per_prompt=0.0,
        decode_base_ms=(shape.weight_bytes - expert_bytes) / tp / bandwidth * ms + overhead_ms,
        decode_ms_per_seq=per_token_s * ms,
        decode_ms_per_context_token=kv_bytes / tp / bandwidth * ms,
        decode_ms_per_seq_sq=0.0,
        decode_ms_per_expert_load=expert_bytes / tp / bandwidth * ms,
        decode_expert_share=shape.experts_per_token / shape.num_experts if shape.is_moe else 0.0,
        source=(f"roofline: {gpu.aliases[0]} datasheet x fitted efficiencies (compute {compute_efficiency:.2f}, "
                f"bandwidth {bandwidth_efficiency:.2f}); error band about {ERROR_BAND_PCT[0]:.0f}% prefill, "
                f"{ERROR_BAND_PCT[1]:.0f}% decode on GPUs with kernel tables"),
        prefill_error_pct=ERROR_BAND_PCT[0],
        decode_error_pct=ERROR_BAND_PCT[1],
    )
