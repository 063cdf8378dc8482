"""Tests of the performance sources: catalogs, kernel tables, roofline, and which one a replica gets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optimizer import ClusterError, OptimizerError, parse_replicas
from optimizer.fleet import kernels
from optimizer.fleet.gpus import GPUS
from optimizer.fleet.models import find_model
from optimizer.fleet.sources import profile_for


def _kernel(spec: str, engine: str = ""):
    replica = parse_replicas(spec, engine=engine, source="kernels").replicas[0]
    gpu = GPUS[replica.gpu]
    name, version = kernels.resolve_engine(engine, gpu)
    return replica, kernels.compile_engine(replica.shape, gpu, replica.tp, name, version), profile_for(replica)


def test_kernel_profile_follows_the_tables_own_calls():
    """Tests that the fitted Llama-3.1-70B TP4 H100 profile gives, within 5%, the times the
    kernel tables return for a decode step, a prefill, a chunk after a cached prefix and a
    mixed step (which the form composes from its parts, reading the weights once)."""
    replica, handle, profile = _kernel("llama-3.1-70b@h100-tp4")
    assert profile.source.startswith("kernels: aiconfigurator-core") and "vllm 0.24.0 on h100_sxm" in profile.source
    pairs = [
        (profile.decode_time_ms(8, 8 * 1024), handle.decode_step_latency(8, 1023, 1)),
        (profile.decode_time_ms(48, 48 * 4096), handle.decode_step_latency(48, 4095, 1)),
        (profile.prefill_time_ms(2048), handle.predict_prefill_latency(1, 2048)),
        (profile.prefill_iteration_ms(1024, 5120**2 - 4096**2, 1), handle.predict_prefill_latency(1, 5120, 4096)),
        (profile.iteration_ms(512, 512**2, 1, 32, 32 * 1025), handle.mixed_step_latency(512, 32, 512, 1024)),
    ]
    for ours, theirs in pairs:
        assert ours == pytest.approx(theirs, rel=0.05)
    # The mixed step is far below a whole prefill plus a whole decode iteration.
    assert profile.iteration_ms(512, 512**2, 1, 32, 32 * 1025) < 0.85 * (profile.prefill_time_ms(512) + profile.decode_time_ms(32, 32 * 1025))


@pytest.mark.parametrize("spec", ["llama-3.1-8b@h100-tp1", "qwen3-32b@h200-tp2", "llama-3.1-8b@l40s-tp1"])
def test_fitted_form_is_within_its_stated_error(spec):
    """Tests that the closed form stays within the error it states against the tables (held out),
    and that this stated error is at most 4% for dense models."""
    replica, handle, profile = _kernel(spec)
    measured = kernels.held_out_error(handle, profile, replica.kv_capacity_tokens)
    assert measured["prefill_mape_pct"] == pytest.approx(profile.prefill_error_pct, abs=1e-3)
    assert measured["decode_mape_pct"] == pytest.approx(profile.decode_error_pct, abs=1e-3)
    assert profile.prefill_error_pct <= 4 and profile.decode_error_pct <= 4


def test_profiles_are_cached_on_disk_with_the_same_numbers(tmp_path, monkeypatch):
    """Tests that a profile read back from the disk cache equals the one built from the tables."""
    monkeypatch.setenv("FLEET_OPTIMIZER_CACHE", str(tmp_path))
    kernels._cached_profile.cache_clear()
    replica = parse_replicas("qwen3-8b@b200-tp1").replicas[0]
    built = profile_for(replica)
    assert list((tmp_path / "profiles").glob("*.json"))
    kernels._cached_profile.cache_clear()
    assert profile_for(replica) == built
    kernels._cached_profile.cache_clear()


def test_kv_capacity_of_three_catalog_models_by_hand():
    """Tests KV capacity against the arithmetic written out: usable memory minus weights, over
    2 x layers x KV heads x head dim x bytes, in whole 16-token blocks."""
    # Llama-3.1-8B on one L40S (45 GiB): 8,029,995,008 params in bf16, 131,072 bytes per token.
    usable = 45 * 0.9 * 2**30 - 2 * 2**30
    assert parse_replicas("llama-3.1-8b@l40s-tp1").replicas[0].kv_capacity_tokens == (usable - 2 * 8_029_995_008) // 131_072 // 16 * 16 == 192_864
    # Qwen3-32B on 2 H200 (141 GiB each): 32,761,446,400 params, 64 layers x 8 KV heads x 128: 262,144 bytes.
    usable = 2 * 141 * 0.9 * 2**30 - 2 * 2 * 2**30
    assert parse_replicas("qwen3-32b@h200-tp2").replicas[0].kv_capacity_tokens == (usable - 2 * 32_761_446_400) // 262_144 // 16 * 16 == 773_216
    # Mixtral-8x7B on 2 H100 with an fp8 KV cache: every expert held (46,702,526,464 params), 65,536 bytes per token.
    cluster = parse_replicas("mixtral-8x7b@h100-tp2")
    replica = cluster.replicas[0]
    from dataclasses import replace

    fp8 = replace(replica, limits=replace(replica.limits, kv_cache_dtype="fp8"))
    usable = 2 * 80 * 0.9 * 2**30 - 2 * 2 * 2**30
    assert fp8.kv_capacity_tokens == (usable - 2 * 46_702_526_464) // 65_536 // 16 * 16 == 868_512
    assert find_model("mixtral-8x7b").num_active_params == pytest.approx(12.88e9, rel=0.01)


def test_sources_by_precedence():
    """Tests the default source of each replica kind: Splitwise measurements for the first
    version's fleet, the kernel tables once an engine is named or the model is modern, and the
    roofline for GPUs without tables (which says so and states its band)."""
    assert profile_for(parse_replicas("h100-tp4").replicas[0]).source.startswith("measured: Splitwise")
    assert profile_for(parse_replicas("h100-tp4", engine="vllm").replicas[0]).source.startswith("kernels:")
    assert "sglang 0.5.14" in profile_for(parse_replicas("llama-3.1-8b@h100-tp1", engine="sglang").replicas[0]).source
    roofline = profile_for(parse_replicas("llama-3.1-8b@l4-tp1").replicas[0])
    assert roofline.source.startswith("roofline:") and "error band" in roofline.source
    # The roofline is within its stated band of the tables on a GPU that has them.
    replica, handle, _ = _kernel("llama-3.1-8b@h100-tp1")
    from optimizer.fleet.roofline import ERROR_BAND_PCT, roofline_profile

    rough = roofline_profile(replica.shape, GPUS[replica.gpu], 1)
    error = kernels.held_out_error(handle, rough, replica.kv_capacity_tokens)
    assert error["prefill_mape_pct"] <= ERROR_BAND_PCT[0] and error["decode_mape_pct"] <= ERROR_BAND_PCT[1]


@pytest.mark.parametrize(
    "spec, engine, source, message",
    [
        ("lama-3.1-8b@h100-tp1", "", "auto", "Unknown model 'lama-3.1-8b' in 'lama-3.1-8b@h100-tp1'; did you mean 'llama-3.1-8b'?"),
        ("llama-3.1-8b@h10-tp1", "", "auto", "Unknown GPU 'h10' in 'llama-3.1-8b@h10-tp1'; did you mean 'h100'?"),
        ("llama-3.1-70b@l40s-tp1", "", "auto", "does not fit on 1 x l40s in 'llama-3.1-70b@l40s-tp1'"),
        ("llama-3.1-8b@h100-tp1", "", "fast", "Unknown performance source 'fast'"),
    ],
)
def test_bad_replicas_are_one_clear_error(spec, engine, source, message):
    """Tests that unknown models, GPUs and sources, and a model too big for its GPUs, are one error naming them."""
    with pytest.raises(ClusterError) as error:
        parse_replicas(spec, engine=engine, source=source)
    assert message in str(error.value)


def test_model_too_big_names_the_smallest_tp_that_fits():
    """Tests that a model that does not fit its GPUs names the smallest TP degree that does."""
    with pytest.raises(ClusterError, match="the smallest tp that fits is 4"):
        parse_replicas("llama-3.1-70b@l40s-tp2")


@pytest.mark.parametrize(
    "spec, engine, source, message",
    [
        ("llama-3.1-8b@h100-tp1", "vlm", "auto", "Unknown engine 'vlm'; did you mean 'vllm'?"),
        ("llama-3.1-8b@h100-tp1", "vllm==0.1.0", "auto", "No kernel tables for vllm==0.1.0 on h100; versions: 0.24.0"),
        ("llama-3.1-8b@l4-tp1", "", "kernels", "GPU 'l4' has no kernel tables; GPUs with them: a100, h100"),
        ("bloom-176b@h100-tp8", "", "kernels", "bloom-176b has no model config the kernel tables can compose"),
    ],
)
def test_unavailable_sources_are_one_clear_error(spec, engine, source, message):
    """Tests that an unknown engine or version, a GPU without kernel tables asked for them, and a
    model without a config are one error naming the replica and what exists."""
    with pytest.raises(OptimizerError) as error:
        profile_for(parse_replicas(spec, engine=engine, source=source).replicas[0])
    assert message in str(error.value) and str(error.value).startswith("Replica ")


def test_a_users_config_json_is_a_model(tmp_path):
    """Tests that a Hugging Face config.json (or its folder) names a model, and that one without a
    needed field is an error naming the field."""
    config = json.loads((find_model.__globals__["resources"].files("aiconfigurator_core") / "model_configs" / "Qwen--Qwen3-8B_config.json").read_text())
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    replica = parse_replicas(f"{folder}@h100-tp1").replicas[0]
    assert replica.shape.num_layers == 36 and profile_for(replica).source.startswith("kernels:")
    del config["num_hidden_layers"]
    (tmp_path / "broken.json").write_text(json.dumps(config))
    with pytest.raises(ClusterError, match=r"broken.json: field 'num_hidden_layers' is missing"):
        parse_replicas(f"{tmp_path / 'broken.json'}@h100-tp1")


def test_unknown_engine_versions_never_reach_the_network(monkeypatch):
    """Tests that compiling never tries a download: unbundled ids are compiled from a local folder."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    kernels._cached_profile.cache_clear()
    profile = profile_for(parse_replicas("mixtral-8x7b@h100-tp2").replicas[0])
    assert profile.decode_expert_share == pytest.approx(0.25) and profile.decode_ms_per_expert_load > 0
    assert np.all(np.diff(profile.decode_time_ms(np.arange(1, 65), np.arange(1, 65) * 1000)) > 0)
