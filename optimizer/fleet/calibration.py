"""Calibration: a profile from the kernel tables corrected to the user's serving stack with a few measured runs.

Kernel tables give modern-stack silicon time; a real engine adds per-iteration CPU, scheduler
and launch overhead and makes its own kernel choices. The correction has three numbers for
each part of an iteration: a scale, an overhead per iteration, and a cost per prompt token
above a stack's batching limit K (prefill; older engines split prompts beyond their token
budget, 2048 in Splitwise's vLLM) or per sequence (decode: sampling and scheduling work)::

    prefill'(T, .) = s_p prefill(T, .) + o_p + u_p max(0, T - K)
    decode'(B, C)  = s_d decode(B, C)  + o_d + u_d B

fitted by non-negative least squares on relative errors, K chosen among `KINKS_TOKENS` by the
calibrated profile's own error on the runs it is fitted on. Every measurement is linear in
(s_p, o_p, u_p, s_d, o_d, u_d): a measured prefill is (prefill, 1, max(0, T - K), 0, 0, 0), a
measured decode step (0, 0, 0, decode, 1, B), and a whole run of a batch of B prompts of L
tokens generating O tokens (what ``vllm bench latency`` reports) is prefill(B, L) +
sum_{i=1}^{O-1} decode(B, B (L + i)), i.e. (prefill, 1, max(0, BL - K), sum decode, O - 1, (O - 1) B).
The profile keeps one kink: with K other than its own, its kink term moves to K.

Accepted measurements:

- Splitwise's perf_model.csv columns (`optimizer.fleet.measurements`): each row gives a
  prefill (prompt_time) and, for token_size <= 256, a decode step (token_time);
- runs of the engine's own benchmark, a CSV ``batch_size,input_len,output_len,latency_s``
  (one row per ``vllm bench latency`` run; latency_s its avg_latency).

At most `MAX_POINTS` runs are used, chosen in a fixed order from the design below (what a
user collects in 6-10 runs); `held_out_error` tests on every other point.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import ProfileError
from optimizer.common.files import atomic_output
from optimizer.fleet.fit import mape_pct, nnls
from optimizer.fleet.measurements import (
    MAX_DECODE_TOKENS,
    _whole_batches,
    read_checked_csv,
)
from optimizer.fleet.profile import Profile

MAX_POINTS = 8
MIN_POINTS = 4
#: (prompt tokens, batch) runs to calibrate on, in order of preference.
DESIGN = ((512, 1), (2048, 1), (8192, 1), (128, 1), (512, 8), (512, 32), (512, 64), (512, 2), (512, 16), (1024, 4))
RUN_COLUMNS = ("batch_size", "input_len", "output_len", "latency_s")
KINKS_TOKENS = (1024.0, 2048.0, 4096.0, 8192.0)


def read_runs(path) -> pd.DataFrame:
    """A CSV of benchmark runs (RUN_COLUMNS), checked line by line: sizes positive whole
    numbers, latencies positive, and for equal batch and input a longer output never faster."""
    table = read_checked_csv(path, (), RUN_COLUMNS[:3], RUN_COLUMNS[3:], "seconds", "runs")
    table.insert(0, "line", table.index.to_numpy())
    table = table.reset_index(drop=True)
    table.attrs["path"] = str(path)
    for _, group in table.sort_values(["batch_size", "input_len", "output_len"]).groupby(["batch_size", "input_len"]):
        faster = group["latency_s"].diff() < 0
        if faster.any():
            line = int(group["line"][faster].iloc[0])
            raise ProfileError("is faster than a run with the same batch and input but fewer output tokens; times must grow with output_len.",
                               path=path, line=line, field="latency_s")
    return table


def measurement_points(profile: Profile, table: pd.DataFrame, kink: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (n x 6) in the base profile's ms, measured ms, 1-based file line) of every point."""
    features, measured, lines = [], [], []
    if "prompt_time" in table.columns:  # Splitwise rows
        rows = _whole_batches(table)
        for line, row in rows.iterrows():
            batch, length = float(row["batch_size"]), float(row["prompt_size"])
            features.append([float(profile._prefill_ms(batch * length, batch * length**2, batch)), 1.0, max(0.0, batch * length - kink), 0.0, 0.0, 0.0])
            measured.append(float(row["prompt_time"]))
            lines.append(int(line))
            if row["token_size"] <= MAX_DECODE_TOKENS:
                context = batch * (length + row["token_size"] / 2)
                features.append([0.0, 0.0, 0.0, float(profile._decode_ms(batch, context)), 1.0, batch])
                measured.append(float(row["token_time"]))
                lines.append(int(line))
    else:  # benchmark runs
        for row in table.itertuples(index=False):
            batch, length, output = float(row.batch_size), float(row.input_len), int(row.output_len)
            steps = np.arange(1, output)
            decode = float(np.sum(profile._decode_ms(np.full(len(steps), batch), batch * (length + steps)))) if output > 1 else 0.0
            features.append([float(profile._prefill_ms(batch * length, batch * length**2, batch)), 1.0, max(0.0, batch * length - kink),
                             decode, float(output - 1), float(output - 1) * batch])
            measured.append(row.latency_s * 1e3)
            lines.append(int(row.line))
    return np.array(features), np.array(measured), np.array(lines)


def calibration_lines(table: pd.DataFrame) -> list[int]:
    """The file lines of at most MAX_POINTS runs, chosen by DESIGN in file order.

    Splitwise rows: the first row of each design point (each gives a prefill and a decode).
    Benchmark runs: the longest-output run of each design point (up to 6), then the
    shortest-output (prefill-only) runs of the first points, so per-iteration and per-step
    overheads can be told apart.
    """
    if "prompt_time" in table.columns:
        usable = table[table["token_size"] <= MAX_DECODE_TOKENS]
        chosen = [usable.index[(usable["prompt_size"] == p) & (usable["batch_size"] == b)][:1].tolist() for p, b in DESIGN]
        lines = [int(i) for found in chosen for i in found][:MAX_POINTS]
        return lines if len(lines) >= MIN_POINTS else [int(i) for i in usable.index[:MAX_POINTS]]
    longest, shortest = [], []
    for prompt, batch in DESIGN:
        runs = table[(table["input_len"] == prompt) & (table["batch_size"] == batch)].sort_values("output_len", kind="stable")
        if len(runs) and runs["output_len"].iloc[-1] > 1:
            longest.append(int(runs["line"].iloc[-1]))
            if runs["output_len"].iloc[0] < runs["output_len"].iloc[-1]:
                shortest.append(int(runs["line"].iloc[0]))
    lines = longest[:6]
    lines += shortest[: MAX_POINTS - len(lines)]
    if len(lines) < MIN_POINTS:
        lines = [int(line) for line in table["line"][:MAX_POINTS]]
    return lines


def calibrate(profile: Profile, table: pd.DataFrame, lines: list[int] | None = None) -> Profile:
    """The profile corrected to the measurements at `lines` (default `calibration_lines`)."""
    path = table.attrs.get("path")
    lines = calibration_lines(table) if lines is None else lines
    best = None
    for kink in (profile.prefill_kink_tokens, *KINKS_TOKENS):
        features, measured, point_lines = measurement_points(profile, table, kink)
        train = np.isin(point_lines, lines)
        if len(set(lines)) < MIN_POINTS or not train.any():
            raise ProfileError(f"has {len(set(lines))} usable runs; calibration needs at least {MIN_POINTS}.", path=path)
        x, y = features[train], measured[train]
        if not ((x[:, 1] > 0).any() and (x[:, 4] > 0).any()):
            raise ProfileError("needs runs that time both prefill and decode (output_len > 1).", path=path)
        s_p, o_p, u_p, s_d, o_d, u_d = nnls(x / y[:, None], np.ones_like(y))
        if s_p <= 0 or s_d <= 0:
            raise ProfileError("the runs do not grow with the work the profile predicts; check their batch and token columns.", path=path)
        moved = dataclasses.replace(profile, prefill_kink_tokens=float(kink))
        corrected = moved.corrected(s_p, o_p, s_d, o_d, prefill_ms_per_token_above_kink=u_p, decode_ms_per_seq=u_d,
                                    source=f"calibrated ({len(set(lines))} runs of {Path(path).name if path else 'measurements'}): "
                                    f"prefill x {s_p:.3f} + {o_p:.2f} ms + {u_p * 1e3:.1f} us/token above {kink:.0f}, "
                                    f"decode x {s_d:.3f} + {o_d:.2f} ms + {u_d * 1e3:.1f} us/seq, on {profile.source}")
        train_error = sum(_errors(corrected, table, lines, train=True))
        if best is None or train_error < best[0]:
            best = (train_error, corrected)
    corrected = best[1]
    error = held_out_error(corrected, table, lines)
    return type(corrected)(**{**asdict(corrected), "prefill_error_pct": round(error[0], 3), "decode_error_pct": round(error[1], 3)})


def held_out_error(profile: Profile, table: pd.DataFrame, train_lines: list[int]) -> tuple[float, float]:
    """MAPE (prefill, decode) of the profile on the points not at `train_lines`."""
    return _errors(profile, table, train_lines, train=False)


def _errors(profile: Profile, table: pd.DataFrame, train_lines: list[int], train: bool) -> tuple[float, float]:
    features, measured, lines = measurement_points(profile, table)
    test = np.isin(lines, train_lines) if train else ~np.isin(lines, train_lines)
    predicted = features[:, 0] + features[:, 3]  # the corrected profile already holds the correction
    # Prefill: points without decode steps; decode: points with them (a Splitwise decode step,
    # or a whole benchmark run that generates more than one token).
    prefill = test & (features[:, 4] == 0)
    decode = test & (features[:, 4] > 0)
    return mape_pct(predicted[prefill], measured[prefill]), mape_pct(predicted[decode], measured[decode])


def write_profiles(profiles: list[Profile], path) -> None:
    """A profile file (JSON list) that `--profiles` reads."""
    with atomic_output(Path(path)) as tmp:
        Path(tmp).write_text(json.dumps([asdict(p) for p in profiles], indent=2, sort_keys=True) + "\n")


def load_profiles(path) -> dict[tuple[str, str, int], Profile]:
    """Profiles a user gives with --profiles: a profile file (.json, from `profile calibrate`)
    or a measurements CSV (Splitwise columns), fitted; keyed by (model, gpu, tp)."""
    from optimizer.fleet.measurements import fit_profiles, read_measurements

    path = Path(path)
    if path.suffix != ".json":
        return fit_profiles(read_measurements(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError("no such file.", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"is not a readable profile file ({exc}).", path=path) from None
    names = {f.name for f in dataclasses.fields(Profile)}
    profiles = {}
    for number, item in enumerate(data if isinstance(data, list) else [None], start=1):
        if not isinstance(item, dict) or set(item) - names or not {"model", "gpu", "tp"} <= set(item):
            raise ProfileError(f"entry {number} is not a profile (write it with `python cli.py profile calibrate`).", path=path)
        try:
            profile = Profile(**item)
        except TypeError as exc:
            raise ProfileError(f"entry {number}: {exc}.", path=path) from None
        profiles[(profile.model, profile.gpu, profile.tp)] = profile
    return profiles
