"""Tests of the performance profiles fitted to GPU measurements (optimizer/fleet/profile.py)."""

from __future__ import annotations

from dataclasses import fields
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import ProfileError
from optimizer.fleet.measurements import (
    builtin_profiles,
    fit_profile,
    fit_profiles,
    holdout_error,
    read_measurements,
)
from optimizer.fleet.profile import Profile

BUNDLED = resources.files("optimizer.fleet").joinpath("data", "splitwise_perf_model.csv")
HEADER = "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,token_time,e2e_time,tensor_parallel"

@pytest.fixture(scope="module")
def measurements():
    return read_measurements(BUNDLED)


@pytest.fixture(scope="module")
def holdout(measurements):
    return holdout_error(measurements).set_index(["model", "gpu", "tp"])


def test_bundled_file_has_the_twelve_configurations(measurements):
    """Tests that the bundled file reads into 1260 rows of 12 configurations, each with a profile."""
    assert len(measurements) == 1260
    assert measurements.index[0] == 2  # the header is line 1
    assert len(builtin_profiles()) == 12
    assert ("llama2-70b", "h100-80gb", 4) in builtin_profiles()


def test_holdout_decode_error_is_at_most_5_pct_everywhere(holdout):
    """Tests that decode iteration time, fitted on the train split, is within 5% MAPE on the held-out rows of every configuration."""
    assert len(holdout) == 12
    assert (holdout["num_test"] == 25).all()
    assert (holdout["decode_mape_pct"] <= 5.0).all(), holdout["decode_mape_pct"]


def test_holdout_prefill_error_is_at_most_8_5_pct_everywhere(holdout):
    """Tests that prefill time stays within the 8.5% MAPE reached today in every configuration (guards regressions)."""
    assert (holdout["prefill_mape_pct"] <= 8.5).all(), holdout["prefill_mape_pct"]


def test_known_point_llama2_70b_tp4_h100():
    """Tests that the profile reproduces llama2-70b TP4 on h100-80gb: a 512-token prefill and decode at 512+64 tokens per sequence."""
    profile = builtin_profiles()[("llama2-70b", "h100-80gb", 4)]
    assert profile.prefill_time_ms(512) == pytest.approx(60.0, rel=0.03)
    batch = np.array([1, 8, 32, 64])
    # The measured rows have 512-token prompts and 128 generated tokens: 576 tokens of context on average.
    decode = profile.decode_time_ms(batch, batch * (512 + 128 / 2))
    np.testing.assert_allclose(decode, [29.5, 31.4, 36.9, 51.5], rtol=0.03)


def test_known_point_matches_the_measurements(measurements):
    """Tests that the quoted known values are the medians of the rows with 512-token prompts and 128 generated tokens."""
    rows = measurements[
        (measurements["model"] == "llama2-70b") & (measurements["hardware"] == "h100-80gb") & (measurements["tensor_parallel"] == 4)
    ]
    rows = rows[(rows["prompt_size"] == 512) & (rows["token_size"] == 128)]
    median = rows.groupby("batch_size")["token_time"].median()
    np.testing.assert_allclose(median.loc[[1, 8, 32, 64]], [29.5, 31.4, 36.9, 51.5], rtol=0.02)


@pytest.mark.parametrize("key", sorted(builtin_profiles()), ids=lambda key: "-".join(map(str, key)))
def test_fitted_times_are_monotone(key):
    """Tests that more prompt tokens, more prompts, a bigger batch or more context never make an iteration faster."""
    profile = builtin_profiles()[key]
    tokens = np.arange(0, 40_000)
    assert np.all(np.diff(profile.prefill_time_ms(tokens)) >= 0)
    batch = np.arange(0, 513)
    assert np.all(np.diff(profile.decode_time_ms(batch, batch * 1000)) >= 0)
    assert np.all(np.diff(profile.decode_time_ms(8, np.arange(0, 200_000, 100))) >= 0)
    assert all(getattr(profile, f.name) >= 0 for f in fields(Profile) if f.type == "float" and not f.name.endswith("_pct"))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 8192), min_size=1, max_size=64),
    extra=st.integers(1, 8192),
    index=st.integers(0, 63),
)
def test_batch_prefill_never_faster_with_more_work(lengths, extra, index):
    """Tests that adding a prompt to a prefill batch, or lengthening one, never makes it faster, and that one prompt matches prefill_time_ms."""
    profile = builtin_profiles()[("llama2-70b", "a100-80gb", 4)]
    base = profile.batch_prefill_time_ms(lengths)
    assert profile.batch_prefill_time_ms([*lengths, extra]) >= base
    longer = list(lengths)
    longer[index % len(longer)] += extra
    assert profile.batch_prefill_time_ms(longer) >= base
    assert profile.batch_prefill_time_ms(lengths[:1]) == pytest.approx(profile.prefill_time_ms(lengths[0]))


def test_builtin_profiles_are_deterministic_and_unshared():
    """Tests that builtin profiles equal a fresh fit of the bundled file and that changing the returned dict changes nothing."""
    first = builtin_profiles()
    first.clear()
    assert builtin_profiles() == fit_profiles(read_measurements(BUNDLED))


def _write(tmp_path, lines):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


ROW = "llama2-70b,h100-80gb,{p},{b},128,0,0,{pt},{tt},0,4"


@pytest.mark.parametrize(
    "lines, line, field, words",
    [
        ([HEADER.replace(",token_time", ""), "x"], 1, "token_time", "column is missing"),
        ([HEADER, ROW.format(p=512, b=1, pt=60, tt=29), ROW.format(p=512, b=2, pt=-3, tt=29)], 3, "prompt_time", "positive"),
        ([HEADER, ROW.format(p=512, b=1, pt=60, tt=0)], 2, "token_time", "positive"),
        ([HEADER, ROW.format(p=512, b=1, pt=60, tt=29), ROW.format(p="big", b=1, pt=60, tt=29)], 3, "prompt_size", "not a number"),
        ([HEADER, ROW.format(p=512, b=1.5, pt=60, tt=29)], 2, "batch_size", "whole number"),
    ],
    ids=["missing-column", "negative-time", "zero-time", "non-numeric", "fractional-size"],
)
def test_bad_measurement_file_names_file_line_and_field(tmp_path, lines, line, field, words):
    """Tests that each bad measurement file raises ProfileError naming the file, the 1-based line and the field."""
    path = _write(tmp_path, lines)
    with pytest.raises(ProfileError) as caught:
        read_measurements(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: {field}: ")
    assert words in message


def test_too_few_points_says_how_many_are_needed(tmp_path):
    """Tests that fitting a file with too few distinct points names the file, line and fields, and the counts needed and present."""
    path = _write(tmp_path, [HEADER] + [ROW.format(p=p, b=1, pt=p / 8, tt=29) for p in (128, 512, 2048)])
    with pytest.raises(ProfileError) as caught:
        fit_profiles(read_measurements(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:2: prompt_size, batch_size: ")
    assert "has 3 distinct" in message and "at least 6 are needed" in message


def test_missing_configuration_is_an_error(measurements):
    """Tests that asking for a configuration absent from the measurements raises ProfileError naming it."""
    with pytest.raises(ProfileError, match="llama2-70b on h100-80gb at TP 16"):
        fit_profile(measurements, "llama2-70b", "h100-80gb", 16)


def test_negative_arguments_are_rejected():
    """Tests that negative token counts or batch sizes raise ProfileError instead of giving a time."""
    profile = builtin_profiles()[("llama2-70b", "h100-80gb", 4)]
    with pytest.raises(ProfileError, match="prompt_tokens"):
        profile.prefill_time_ms(-1)
    with pytest.raises(ProfileError, match="context_tokens"):
        profile.decode_time_ms(4, np.array([10, -5]))
    assert profile.batch_prefill_time_ms([]) == 0.0
    assert profile.decode_time_ms(0, 0) == 0.0
