"""Held-out fit error of the profiles fitted to the bundled Splitwise measurements, as a Markdown table.

    python benchmarks/profile_fit.py

Fits each configuration of the bundled Splitwise measurements on batch sizes 1, 2, 8, 32, 64
and prompt sizes 128, 512, 2048, 8192, and reports the mean absolute percentage error on
every other measurement (prefill time, and decode iteration time where its context is known).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optimizer.fleet.measurements import holdout_error, read_measurements  # noqa: E402


def main() -> None:
    path = resources.files("optimizer.fleet").joinpath("data", "splitwise_perf_model.csv")
    errors = holdout_error(read_measurements(path))
    print("| model | GPU | TP | prefill MAPE % | decode MAPE % | train rows | test rows |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in errors.itertuples(index=False):
        flag = ""
        print(f"| {row.model} | {row.gpu} | {row.tp} | {row.prefill_mape_pct:.2f}{flag} | {row.decode_mape_pct:.2f} | {row.num_train} | {row.num_test} |")


if __name__ == "__main__":
    main()
