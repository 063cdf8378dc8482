"""Tests of calibration: a kernel-table profile corrected to measured runs of another stack."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer import ProfileError, parse_replicas
from optimizer.fleet.calibration import (
    calibrate,
    calibration_lines,
    load_profiles,
    read_runs,
    write_profiles,
)
from optimizer.fleet.sources import profile_for


def _base():
    return profile_for(parse_replicas("llama-3.1-8b@h100-tp1", source="kernels").replicas[0])


def _runs(profile, prefill=(1.5, 5.0), decode=(1.2, 3.0, 0.05)) -> pd.DataFrame:
    """Synthetic `vllm bench latency` runs of a stack that is `profile` corrected by known numbers."""
    rows, line = [], 2
    for batch in (1, 8, 32, 64):
        for length in (512, 2048, 8192):
            for output in (1, 65):
                steps = np.arange(1, output)
                prefill_ms = prefill[0] * profile.batch_prefill_time_ms([length] * batch) + prefill[1]
                decode_ms = np.sum(decode[0] * profile.decode_time_ms(np.full(len(steps), batch), batch * (length + steps))
                                   + decode[1] + decode[2] * batch)
                rows.append({"line": line, "batch_size": batch, "input_len": length, "output_len": output,
                             "latency_s": (prefill_ms + decode_ms) / 1e3})
                line += 1
    table = pd.DataFrame(rows)
    table.attrs["path"] = "runs.csv"
    return table


def test_calibration_recovers_a_known_overhead_and_scale():
    """Tests that runs made from the profile with a known scale and overheads give them back,
    from at most 8 runs, and that the calibrated profile then predicts every other run."""
    base = _base()
    table = _runs(base)
    lines = calibration_lines(table)
    assert 4 <= len(lines) <= 8
    calibrated = calibrate(base, table, lines)
    assert calibrated.prefill_base_ms == pytest.approx(1.5 * base.prefill_base_ms + 5.0, rel=1e-4)
    assert calibrated.prefill_ms_per_token == pytest.approx(1.5 * base.prefill_ms_per_token, rel=1e-4)
    assert calibrated.decode_base_ms == pytest.approx(1.2 * base.decode_base_ms + 3.0, rel=1e-4)
    assert calibrated.decode_ms_per_seq == pytest.approx(1.2 * base.decode_ms_per_seq + 0.05, rel=1e-4)
    assert calibrated.prefill_error_pct < 0.01 and calibrated.decode_error_pct < 0.01
    assert calibrated.source.startswith("calibrated (")


def test_profile_files_round_trip(tmp_path):
    """Tests that a written profile file reads back as the same profiles (what --profiles uses)."""
    calibrated = calibrate(_base(), _runs(_base()))
    write_profiles([calibrated], tmp_path / "mine.json")
    assert load_profiles(tmp_path / "mine.json") == {("llama-3.1-8b", "h100-80gb", 1): calibrated}


@pytest.mark.parametrize(
    "text, message",
    [
        ("batch_size,input_len,output_len\n1,512,2\n", "runs.csv:1: latency_s: column is missing"),
        ("batch_size,input_len,output_len,latency_s\n1,512,2,0\n", "runs.csv:2: latency_s: must be a positive number of seconds"),
        ("batch_size,input_len,output_len,latency_s\n1,512.5,2,0.1\n", "runs.csv:2: input_len: must be a positive whole number"),
        ("batch_size,input_len,output_len,latency_s\n1,512,2,0.5\n1,512,64,0.2\n", "runs.csv:3: latency_s: is faster than a run with the same batch"),
    ],
)
def test_bad_runs_name_the_line(tmp_path, text, message):
    """Tests that a bad runs file is one error naming the file, line and column."""
    path = tmp_path / "runs.csv"
    path.write_text(text)
    with pytest.raises(ProfileError) as error:
        read_runs(path)
    assert message in str(error.value)


def test_too_few_runs_is_an_error(tmp_path):
    """Tests that calibration refuses fewer runs than it has numbers to fit."""
    path = tmp_path / "runs.csv"
    path.write_text("batch_size,input_len,output_len,latency_s\n1,512,64,0.5\n8,512,64,0.6\n")
    with pytest.raises(ProfileError, match="has 2 usable runs; calibration needs at least 4"):
        calibrate(_base(), read_runs(path))
