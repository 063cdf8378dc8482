"""Measured iterations: Splitwise's perf_model.csv format, read and fitted to the profile form.

The form is `optimizer.fleet.profile`'s. What the measured configurations showed:
prefill a4 (per prompt) matters for llama2-70b on A100 (a batch of prompts is 7-34% slower
than one prompt of the same total; elsewhere a4 ~ 0); the ridge T_r lands at 150-240 tokens
on A100 and 240-512 on H100 (peak FLOP/s over memory bandwidth is ~150 and ~300); in every
configuration the cost per token jumps between 2048 and 4096 tokens per iteration (cause
unknown), so T_k = 2048; context 128 -> 8192 at batch 1 adds 2-9% to a decode step; and
every configuration slows more than linearly from batch 32 to 64 (h100 TP4: 29.6 ms at
batch 1, 36.9 at 32, 52.0 at 64), hence d3.

Reading the measurements (Splitwise's perf_model.csv):
- A row's token_time averages the decode iterations of one run, whose context grows from
  prompt_size to prompt_size + token_size: it is decode(batch_size, batch_size*(prompt_size +
  token_size/2)). That holds up to token_size 256, where e2e_time = prompt_time +
  (token_size-1)*token_time; longer runs stopped early (after ~360..1700 tokens), so their context
  is unknown and they are not used for decode. The fits never use e2e_time.
- A bigger batch of the same prompts that prefills faster than a smaller one did not run as one
  batch (TP 2, batch 64: e2e_time implies ~2000 decode iterations for 128 tokens, so the batch ran
  in waves, presumably for lack of KV cache); such rows are dropped.
- h100-80gb-pcap rows are h100-80gb rows with prompt_time x 1.3 (the rest copied): scaled profiles.
- Repeats of a point count as their median; the fits minimise the squared relative error over the
  points by non-negative least squares, with T_r on a grid.

Held out (fit on batch 1,2,8,32,64 x prompt 128,512,2048,8192), decode is within 3.1% MAPE in every
configuration but prefill only within 2-8%: some points (batch 16 of 512-token prompts on A100,
bimodal repeats at batch 4) sit 15-25% off the trend of their neighbours, which no smooth form
predicts; 7 of 12 configurations miss the 5% target.
"""

from __future__ import annotations

import csv
import functools
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import ProfileError
from optimizer.fleet.fit import fit_decode, fit_prefill, mape_pct
from optimizer.fleet.profile import Profile

#: Columns a measurement file must have, by type of value; other columns (power, e2e_time) are ignored.
TEXT_COLUMNS = ("model", "hardware")
SIZE_COLUMNS = ("tensor_parallel", "prompt_size", "batch_size", "token_size")
TIME_COLUMNS = ("prompt_time", "token_time")
REQUIRED_COLUMNS = TEXT_COLUMNS + SIZE_COLUMNS + TIME_COLUMNS

#: Prefill tokens per iteration above which each token costs more (see the module docstring).
KINK_TOKENS = 2048.0
#: Longest decode run (token_size) whose context is known.
MAX_DECODE_TOKENS = 256
#: Distinct points needed: one more than the coefficients of each fit.
MIN_PREFILL_POINTS = 6
MIN_DECODE_POINTS = 5

_BUILTIN = ("data", "splitwise_perf_model.csv")
_CONFIG = ("model", "hardware", "tensor_parallel")


def read_measurements(path) -> pd.DataFrame:
    """Read a measurement CSV (Splitwise's perf_model.csv columns), checking every value the fits use.

    Returns the columns of `REQUIRED_COLUMNS` indexed by the 1-based line of each row in the file
    (the header is line 1), with the path in ``attrs["path"]`` so that later errors can point at
    the file. Raises ProfileError naming the file, line and column of the first bad value.
    """
    return read_checked_csv(path, TEXT_COLUMNS, SIZE_COLUMNS, TIME_COLUMNS, "milliseconds", "measurements")


#: Largest prompt or output length in a measurement (the trace loader's token limit) and
#: largest batch (the engine limit clusters accept).
MAX_SIZE = 2**24
MAX_BATCH = 16_384


def read_checked_csv(path, text: tuple[str, ...], sizes: tuple[str, ...], times: tuple[str, ...],
                     time_unit: str, what: str) -> pd.DataFrame:
    """The named columns of a CSV, every cell checked: text non-empty, sizes positive whole
    numbers, times positive numbers (of `time_unit`). Indexed by file line, path in attrs;
    ProfileError naming the file, line and column of the first bad cell."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            records = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProfileError(f"cannot be read as CSV ({exc}).", path=path) from None
    if header is None:
        raise ProfileError(f"is empty; it needs a header line and {what}.", path=path)
    header = [name.strip() for name in header]
    required = text + sizes + times
    for column in required:
        if column not in header:
            raise ProfileError(f"column is missing; the header must name {', '.join(required)}.", path=path, line=1, field=column)
    if not records:
        raise ProfileError(f"has no {what} after the header.", path=path, line=1)
    position = {column: header.index(column) for column in required}
    values: dict[str, list] = {column: [] for column in required}
    for line, row in records:
        if len(row) != len(header):
            raise ProfileError(f"has {len(row)} fields but the header has {len(header)}.", path=path, line=line)
        for column in required:
            cell = row[position[column]].strip()
            values[column].append(_parse(cell, column in text, column in sizes, time_unit, path, line, column))
    table = pd.DataFrame(values, index=pd.Index([line for line, _ in records], name="line"))
    table = table.astype({**{c: "int64" for c in sizes}, **{c: "float64" for c in times}})
    table.attrs["path"] = str(path)
    return table


def fit_profile(measurements: pd.DataFrame, model: str, gpu: str, tp: int) -> Profile:
    """Fit the profile of one configuration to the measurements of `read_measurements`."""
    path = measurements.attrs.get("path")
    missing = [column for column in REQUIRED_COLUMNS if column not in measurements.columns]
    if missing:
        raise ProfileError(f"measurements lack the columns {', '.join(missing)}.", path=path)
    rows = _rows_of(measurements, model, gpu, tp)
    name = f"{model} on {gpu} at TP {tp}"
    if rows.empty:
        raise ProfileError(f"there are no measurements of {name}.", path=path)
    rows = _whole_batches(rows)
    first_line = int(rows.index.min()) if path is not None else None

    prefill = rows.groupby(["prompt_size", "batch_size"])["prompt_time"].median().reset_index()
    if len(prefill) < MIN_PREFILL_POINTS:
        raise ProfileError(
            f"{name} has {len(prefill)} distinct (prompt_size, batch_size) points; "
            f"at least {MIN_PREFILL_POINTS} are needed to fit prefill.",
            path=path, line=first_line, field="prompt_size, batch_size",
        )
    known = rows[rows["token_size"] <= MAX_DECODE_TOKENS]
    decode = known.groupby(["prompt_size", "batch_size", "token_size"])["token_time"].median().reset_index()
    if len(decode) < MIN_DECODE_POINTS:
        raise ProfileError(
            f"{name} has {len(decode)} distinct (prompt_size, batch_size, token_size <= {MAX_DECODE_TOKENS}) points; "
            f"at least {MIN_DECODE_POINTS} are needed to fit decode.",
            path=path, line=first_line, field="prompt_size, batch_size, token_size",
        )

    length = prefill["prompt_size"].to_numpy(float)
    batch = prefill["batch_size"].to_numpy(float)
    ridge, _, a = fit_prefill(length * batch, batch * length**2, batch, prefill["prompt_time"].to_numpy(float), kinks=(KINK_TOKENS,))
    batch = decode["batch_size"].to_numpy(float)
    context = batch * (decode["prompt_size"].to_numpy(float) + decode["token_size"].to_numpy(float) / 2)
    y = decode["token_time"].to_numpy(float)
    d = fit_decode(batch, context, y)
    return Profile(
        model=str(model),
        gpu=str(gpu),
        tp=int(tp),
        prefill_base_ms=float(a[0]),
        prefill_ridge_tokens=float(ridge),
        prefill_ms_per_token=float(a[1]),
        prefill_kink_tokens=float(KINK_TOKENS),
        prefill_ms_per_token_above_kink=float(a[2]),
        prefill_attention_ms_per_token_sq=float(a[3]),
        prefill_ms_per_prompt=float(a[4]),
        decode_base_ms=float(d[0]),
        decode_ms_per_seq=float(d[1]),
        decode_ms_per_context_token=float(d[2]),
        decode_ms_per_seq_sq=float(d[3]),
    )


def fit_profiles(measurements: pd.DataFrame) -> dict[tuple[str, str, int], Profile]:
    """Fit every configuration in the measurements, keyed by (model, gpu, tp)."""
    return {key: fit_profile(measurements, *key) for key in _configurations(measurements)}


def builtin_profiles() -> dict[tuple[str, str, int], Profile]:
    """Profiles of every configuration of the bundled Splitwise measurements (see data/README.md)."""
    return dict(_builtin_profiles())


def holdout_error(
    measurements: pd.DataFrame,
    train_batch_sizes=(1, 2, 8, 32, 64),
    train_prompt_sizes=(128, 512, 2048, 8192),
) -> pd.DataFrame:
    """Fit each configuration on the rows with a train batch size and a train prompt size, and give
    the mean absolute percentage error on all other rows (decode: those whose context is known).
    Rows that did not run as one batch are left out of both sides."""
    results = []
    for model, gpu, tp in _configurations(measurements):
        rows = _whole_batches(_rows_of(measurements, model, gpu, tp))
        is_train = rows["batch_size"].isin(train_batch_sizes) & rows["prompt_size"].isin(train_prompt_sizes)
        train, test = rows[is_train], rows[~is_train]
        profile = fit_profile(train, model, gpu, tp)
        length = test["prompt_size"].to_numpy(float)
        batch = test["batch_size"].to_numpy(float)
        prefill = profile._prefill_ms(length * batch, batch * length**2, batch)
        known = (test["token_size"] <= MAX_DECODE_TOKENS).to_numpy()
        context = batch * (length + test["token_size"].to_numpy(float) / 2)
        decode = profile._decode_ms(batch[known], context[known])
        results.append({
            "model": model,
            "gpu": gpu,
            "tp": tp,
            "prefill_mape_pct": mape_pct(prefill, test["prompt_time"].to_numpy(float)),
            "decode_mape_pct": mape_pct(decode, test["token_time"].to_numpy(float)[known]),
            "num_train": len(train),
            "num_test": len(test),
        })
    columns = ["model", "gpu", "tp", "prefill_mape_pct", "decode_mape_pct", "num_train", "num_test"]
    return pd.DataFrame(results, columns=columns)


# Fitting


@functools.cache
def _builtin_profiles() -> tuple[tuple[tuple[str, str, int], Profile], ...]:
    # Cached as a tuple so that no caller can change what the next one gets.
    with resources.as_file(resources.files("optimizer.fleet").joinpath(*_BUILTIN)) as path:
        return tuple(fit_profiles(read_measurements(path)).items())


def _configurations(measurements: pd.DataFrame) -> list[tuple[str, str, int]]:
    keys = measurements[list(_CONFIG)].drop_duplicates().sort_values(list(_CONFIG))
    return [(str(m), str(g), int(t)) for m, g, t in keys.itertuples(index=False)]


def _rows_of(measurements: pd.DataFrame, model: str, gpu: str, tp: int) -> pd.DataFrame:
    return measurements[
        (measurements["model"] == model) & (measurements["hardware"] == gpu) & (measurements["tensor_parallel"] == tp)
    ]


def _whole_batches(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows minus those whose prefill beat a smaller batch of the same prompts (see module docstring)."""
    keys = ["prompt_size", "token_size", "batch_size"]
    median = rows.groupby(keys)["prompt_time"].median()  # sorted by batch size within each group
    smaller_best = median.groupby(level=[0, 1]).cummax().groupby(level=[0, 1]).shift(1)
    split = median.index[median < smaller_best]
    return rows[~pd.MultiIndex.from_frame(rows[keys]).isin(split)]


# Small helpers


def _parse(text: str, is_text: bool, is_size: bool, time_unit: str, path: Path, line: int, column: str):
    if is_text:
        if not text:
            raise ProfileError("is empty.", path=path, line=line, field=column)
        return text
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"is not a number: {text!r}.", path=path, line=line, field=column) from None
    what = "a positive whole number" if is_size else f"a positive number of {time_unit}"
    if not np.isfinite(value) or value <= 0 or (is_size and not value.is_integer()):
        raise ProfileError(f"must be {what}, not {text!r}.", path=path, line=line, field=column)
    most = MAX_BATCH if "batch" in column else MAX_SIZE
    if is_size and value > most:
        raise ProfileError(f"is {text}, more than {most:,}; not a measurement this tool can use.", path=path, line=line, field=column)
    return int(value) if is_size else value
