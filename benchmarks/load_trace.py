"""Benchmark: loading large traces, against a bare pandas.read_csv of the same file.

    python benchmarks/load_trace.py [--rows 1000000]

Writes 1,000,000-row files (seeded resampling of the bundled traces' rows; Azure arrivals
re-spaced at the trace's own mean rate) into a temporary folder in three formats, then
times `load_trace` (parsing, validating every cell, normalizing) and, in the same run,
`pandas.read_csv` alone on the same file, so the overhead of validation is a ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_trace  # noqa: E402

SEED = 2026


def make_files(folder: Path, rows: int) -> dict[str, Path]:
    rng = np.random.default_rng(SEED)
    conv = pd.read_csv(ROOT / "traces" / "AzureLLMInferenceTrace_conv.csv")
    pick = rng.integers(0, len(conv), rows)
    # Azure: absolute timestamps with 7 fractional digits, as in the real file.
    gaps_ns = rng.exponential(1e9 / 5.53, rows).astype(np.int64)
    stamps = pd.Timestamp("2023-11-16 18:15:46") + pd.to_timedelta(np.cumsum(gaps_ns), unit="ns")
    azure = pd.DataFrame(
        {
            "TIMESTAMP": stamps.strftime("%Y-%m-%d %H:%M:%S.%f") + "0",
            "ContextTokens": conv["ContextTokens"].to_numpy()[pick],
            "GeneratedTokens": conv["GeneratedTokens"].to_numpy()[pick],
        }
    )
    sharegpt = pd.read_csv(ROOT / "traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    lengths = sharegpt.iloc[rng.integers(0, len(sharegpt), rows)]
    native = pd.DataFrame(
        {
            "request_id": "req-" + pd.Series(np.arange(rows)).astype(str),
            "arrival_s": np.cumsum(rng.exponential(0.2, rows)).round(6),
            "prompt_tokens": lengths["num_prefill_tokens"].to_numpy(),
            "output_tokens": lengths["num_decode_tokens"].to_numpy(),
            "model": "llama2-70b",
        }
    )
    files = {"azure": folder / "azure.csv", "lengths": folder / "lengths.csv", "native": folder / "native.csv"}
    azure.to_csv(files["azure"], index=False)
    lengths.to_csv(files["lengths"], index=False)
    native.to_csv(files["native"], index=False)
    return files


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.rows)
        print("| format | rows | file MB | load_trace s | pandas.read_csv s | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, path in files.items():
            loaded = best_of(args.repeats, lambda path=path: load_trace(path))
            bare = best_of(args.repeats, lambda path=path: pd.read_csv(path))
            assert load_trace(path).num_requests == args.rows
            mb = path.stat().st_size / 1e6
            print(f"| {name} | {args.rows:,} | {mb:.0f} | {loaded:.2f} | {bare:.2f} | {loaded / bare:.2f} |")


if __name__ == "__main__":
    main()
