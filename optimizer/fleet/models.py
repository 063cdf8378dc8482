"""Models: the shapes that size a model's weights, KV cache and kernels, from a catalog or a config.json.

A model is named by a catalog entry (`MODELS`, listed by ``python cli.py models``) or by the
path of a Hugging Face ``config.json`` (or a folder holding one) that the user has. Its
shape comes from the config's fields:

    kv_bytes_per_token = 2 (K and V) x layers x kv_heads x head_dim x kv_dtype_bytes
    params = embeddings (vocab x hidden, twice unless tied)
           + layers x (hidden x head_dim x (2 heads + 2 kv_heads)            attention
                       + 3 x hidden x intermediate                           gated MLP (dense)
                       or experts x 3 x hidden x expert_intermediate + hidden x experts)   (MoE)
    active params per token: the same with experts_per_token experts in place of experts

Mixture-of-experts models (Mixtral, Qwen3-MoE): every expert's weights are held in memory,
and the kernel tables time the experts a token is routed to, with expert weights split
across the tensor-parallel group (tensor-parallel experts, no expert parallelism).

Catalog models resolve from configs bundled with `aiconfigurator-core` (or with this
package, for Llama-2-70B): nothing is downloaded. llama2-70b and bloom-176b also have the
Splitwise measurements.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from optimizer.common.errors import ClusterError

#: Architectures whose kernels the kernel tables compose (dense Llama-style, and MoE).
DENSE_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM")
MOE_ARCHITECTURES = ("MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM")
#: Fields every config.json must give (others have the usual defaults).
REQUIRED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class ModelShape:
    """What sizes a model's weights, KV cache and kernels."""

    name: str
    num_params: float
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype_bytes: int = 2  # bf16 / fp16 weights
    hidden_size: int = 0
    num_heads: int = 0
    context_tokens: int = 0  # longest context the model was trained for (max_position_embeddings)
    num_active_params: float = 0.0  # per token; = num_params for dense models
    num_experts: int = 0  # 0 for dense models
    experts_per_token: int = 0
    #: What the kernel tables compile: a bundled Hugging Face id, or a folder with config.json ("" = none).
    kernel_model: str = ""
    source: str = ""

    @property
    def weight_bytes(self) -> float:
        return self.num_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        return self.kv_bytes_per_token_at(self.dtype_bytes)

    def kv_bytes_per_token_at(self, kv_dtype_bytes: int) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_dtype_bytes

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0


def shape_from_config(config: dict, name: str, where: str, kernel_model: str = "") -> ModelShape:
    """The shape a Hugging Face config describes; errors name the config and the field."""
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    for field in REQUIRED_FIELDS:
        value = config.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ClusterError(f"{where}: field {field!r} is missing or not a positive whole number; a model config needs {', '.join(REQUIRED_FIELDS)}.")
    architecture = (config.get("architectures") or ["LlamaForCausalLM"])[0]
    if architecture not in DENSE_ARCHITECTURES + MOE_ARCHITECTURES:
        known = ", ".join(DENSE_ARCHITECTURES + MOE_ARCHITECTURES)
        raise ClusterError(f"{where}: architecture {architecture!r} is not modelled; known: {known}.")
    hidden, layers, heads = config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    experts = int(config.get("num_local_experts") or config.get("num_experts") or 0) if architecture in MOE_ARCHITECTURES else 0
    per_token = int(config.get("num_experts_per_tok") or 0)
    if experts and not 0 < per_token <= experts:
        raise ClusterError(f"{where}: field 'num_experts_per_tok' must be between 1 and the {experts} experts.")
    intermediate = int(config.get("moe_intermediate_size") or config.get("intermediate_size") or 4 * hidden) if experts else int(config.get("intermediate_size") or 4 * hidden)
    embeddings = config["vocab_size"] * hidden * (1 if config.get("tie_word_embeddings") else 2)
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    if experts:
        mlp, active_mlp = experts * 3 * hidden * intermediate + hidden * experts, per_token * 3 * hidden * intermediate + hidden * experts
    else:
        mlp = active_mlp = 3 * hidden * intermediate
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return ModelShape(
        name=name,
        num_params=float(embeddings + layers * (attention + mlp)),
        num_layers=layers,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        dtype_bytes=4 if dtype == "float32" else 2,
        hidden_size=hidden,
        num_heads=heads,
        context_tokens=int(config.get("max_position_embeddings") or 0),
        num_active_params=float(embeddings + layers * (attention + active_mlp)),
        num_experts=experts,
        experts_per_token=per_token if experts else 0,
        kernel_model=kernel_model,
        source=where,
    )


#: Catalog names -> the Hugging Face id whose config aiconfigurator-core bundles.
_CATALOG = {
    "llama-3.1-8b": "meta-llama/Meta-Llama-3.1-8B",
    "llama-3.1-70b": "meta-llama/Meta-Llama-3.1-70B",
    "llama-3.1-405b": "meta-llama/Meta-Llama-3.1-405B",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-32b": "Qwen/Qwen3-32B",
    "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "mixtral-8x22b": "mistralai/Mixtral-8x22B-v0.1",
}
_LLAMA2_CONFIG = "data/models/meta-llama--Llama-2-70b-hf.json"
#: The models of the Splitwise measurements, with the shapes the first version sized them by.
_MEASURED = {
    # Llama-2-70B: grouped-query attention (8 KV heads); kernels from its config (bundled here).
    "llama2-70b": ModelShape("llama2-70b", num_params=68.98e9, num_layers=80, num_kv_heads=8, head_dim=128,
                             hidden_size=8192, num_heads=64, context_tokens=4096, num_active_params=68.98e9,
                             kernel_model="package:" + _LLAMA2_CONFIG,
                             source="meta-llama/Llama-2-70b-hf config; Splitwise measurements"),
    # BLOOM-176B: full multi-head attention (112 heads), ALiBi: the measurements only.
    "bloom-176b": ModelShape("bloom-176b", num_params=176.25e9, num_layers=70, num_kv_heads=112, head_dim=128,
                             hidden_size=14336, num_heads=112, context_tokens=2048, num_active_params=176.25e9,
                             source="BLOOM paper (BigScience 2022); Splitwise measurements"),
}
DEFAULT_MODEL = "llama2-70b"


def catalog_names() -> list[str]:
    return sorted([*_CATALOG, *_MEASURED])


@functools.cache
def _catalog_shape(name: str) -> ModelShape:
    if name in _MEASURED:
        return _MEASURED[name]
    from aiconfigurator_core.sdk import common  # the ids it resolves without a download

    hf_id = _CATALOG[name]
    file = "model_configs/" + hf_id.replace("/", "--") + "_config.json"
    text = resources.files("aiconfigurator_core").joinpath(file).read_text()
    # An id it does not resolve offline is compiled from a folder holding the same config.
    kernel_model = hf_id if hf_id in common.DefaultHFModels else "aiconfigurator:" + file
    return shape_from_config(json.loads(text), name, f"{hf_id} config (bundled with aiconfigurator-core)", kernel_model)


def find_model(name: str, where: str = "") -> ModelShape:
    """The model a name means: a catalog entry, or a path to a config.json (or its folder)."""
    key = name.lower()
    if key in _CATALOG or key in _MEASURED:
        return _catalog_shape(key)
    path = Path(name)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists() or "/" in name:
        return _config_shape(str(path.resolve()) if path.exists() else str(path))
    close = difflib.get_close_matches(key, catalog_names(), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    place = f" in {where}" if where else ""
    raise ClusterError(f"Unknown model {name!r}{place}; {hint}known: {', '.join(catalog_names())}, or a path to a config.json.")


@functools.cache
def _config_shape(path: str) -> ModelShape:
    file = Path(path)
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClusterError(f"{path}: no such model config file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClusterError(f"{path}: not a readable JSON model config ({exc}).") from None
    if not isinstance(config, dict):
        raise ClusterError(f"{path}: a model config must be a JSON object.")
    return shape_from_config(config, path, path, kernel_model=str(file.parent))
