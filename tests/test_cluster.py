"""Tests of inline cluster descriptions."""

from __future__ import annotations

import pytest

from optimizer import ClusterError, parse_replicas


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
        ("h100-tp4:0", "must be at least 1"),
    ],
)
def test_bad_specs_are_rejected_clearly(spec, message):
    """Tests that each malformed cluster spec gives one clear error."""
    with pytest.raises(ClusterError, match=message):
        parse_replicas(spec)
