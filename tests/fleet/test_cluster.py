"""Tests of inline cluster descriptions."""

from __future__ import annotations

import pytest

from optimizer import ClusterError, load_cluster, parse_replicas, resolve_cluster


def test_mixed_fleet_spec_names_every_replica():
    """Tests that a mixed spec gives one named replica per unit, in order, with GPU aliases resolved."""
    cluster = parse_replicas("h100-tp4:2,a100-tp4:1,bloom-176b@h100-tp8")
    assert cluster.names == ["h100-tp4-0", "h100-tp4-1", "a100-tp4-0", "h100-tp8-0"]
    assert [r.gpu for r in cluster.replicas] == ["h100-80gb", "h100-80gb", "a100-80gb", "h100-80gb"]
    assert cluster.models == ["llama2-70b", "bloom-176b"]
    assert parse_replicas(cluster.describe()) == cluster


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "has an empty group"),
        ("h100-tp4:4,", "has an empty group"),
        ("h100x4", "is not of the form"),
        ("v100-tp4:2", "Unknown GPU 'v100'"),
        ("gpt-5@h100-tp4:2", "Unknown model 'gpt-5'"),
        ("h100-tp3:2", "Tensor-parallel degree 3"),
        ("h100-tp4:0", "must be from 1 to 4,096"),
    ],
)
def test_bad_specs_are_rejected_clearly(spec, message):
    """Tests that each malformed cluster spec gives one clear error."""
    with pytest.raises(ClusterError, match=message):
        parse_replicas(spec)


def test_kv_capacity_follows_model_shape_and_memory():
    """Tests KV capacities against hand computation: llama2-70b keeps 320 KiB per token (GQA, 8 KV
    heads), so TP4 on 80 GB GPUs holds about 496k tokens and TP2 about 38k; BLOOM's full attention
    leaves a TP8 H100 replica about 62k tokens."""
    capacity = {spec: parse_replicas(spec).replicas[0].kv_capacity_tokens for spec in ("a100-tp2", "h100-tp4", "bloom-176b@h100-tp8")}
    # (tp * 80 GiB * 0.9 - tp * 2 GiB - 68.98e9 * 2 B) / (2 * 80 * 8 * 128 * 2 B), whole 16-token blocks
    assert capacity["h100-tp4"] == (int((4 * 80 * 0.9 * 2**30 - 4 * 2 * 2**30 - 137.96e9) / 327680) // 16) * 16
    assert 37_000 < capacity["a100-tp2"] < 38_500
    assert 60_000 < capacity["bloom-176b@h100-tp8"] < 63_000


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a100-tp1", "llama2-70b does not fit on 1 x a100-80gb in 'a100-tp1': its weights take 128.5 GiB"),
        ("bloom-176b@h100-tp4", "bloom-176b does not fit on 4 x h100-80gb"),
    ],
)
def test_models_that_do_not_fit_are_rejected(spec, message):
    """Tests that a model too big for its GPUs is one clear error, not a zero-capacity replica."""
    with pytest.raises(ClusterError, match=message):
        parse_replicas(spec)


def test_cluster_files_in_toml_and_json(tmp_path):
    """Tests that TOML and JSON cluster files give the same cluster, engine limits and name prefixes included."""
    toml = tmp_path / "c.toml"
    toml.write_text('[[replicas]]\ngpu = "h100"\ntp = 4\ncount = 2\nmax_num_seqs = 32\n\n'
                    '[[replicas]]\ngpu = "a100"\ntp = 8\nmodel = "bloom-176b"\nname = "big"\n')
    json_file = tmp_path / "c.json"
    json_file.write_text('{"replicas": [{"gpu": "h100", "tp": 4, "count": 2, "max_num_seqs": 32},'
                         ' {"gpu": "a100", "tp": 8, "model": "bloom-176b", "name": "big"}]}')
    first, second = resolve_cluster(str(toml)), resolve_cluster(str(json_file))
    assert first == second
    assert first.names == ["h100-tp4-0", "h100-tp4-1", "big-0"]
    assert first.replicas[0].limits.max_num_seqs == 32 and first.replicas[2].model == "bloom-176b"


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[replicas]]\ngpu = "h100"\n', "replica group 1: missing field 'tp'"),
        ('[[replicas]]\ngpu = "h100"\ntp = 4\ncolour = "red"\n', "unknown field 'colour'"),
        ('[[replicas]]\ngpu = "h100"\ntp = "four"\n', "tp must be a whole number, got 'four'"),
        ('[[replicas]]\ngpu = "h100"\ntp = 4\ngpu_memory_utilization = 1.5\n', "gpu_memory_utilization in .* must be in"),
        ('[replicas\n', "not valid TOML"),
        ('title = "x"\n', "needs a non-empty list 'replicas'"),
    ],
)
def test_bad_cluster_files_name_the_group_and_field(tmp_path, text, message):
    """Tests that each malformed cluster file gives one clear error naming the file, group and field."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ClusterError, match=message):
        load_cluster(path)
