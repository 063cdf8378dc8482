"""Benchmark of sweeps: the 48 cells of examples/sweep.toml on the ShareGPT stats trace
(30,731 requests a cell instead of the example's 400 of the ShareGPT batch, so that a cell
outweighs Ray's start-up), serially, then on a local Ray instance with 1 and with 2
workers; the tables must be the same bytes.

    python benchmarks/sweep.py            # serial, 1 and 2 workers
    python benchmarks/sweep.py --workers 2  # one setting only (for timing a whole process)

Wall seconds from start to table (Ray's start-up included), and this process's CPU seconds
(the Ray workers' CPU is in other processes). Scaling ratio = wall(1 worker) / wall(2 workers).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.reporting.sweep import read_spec, run_sweep, to_markdown  # noqa: E402


def spec_cells():
    text = (ROOT / "examples" / "sweep.toml").read_text()
    text = text.replace("max_requests = 400\n", "").replace('"../traces/sharegpt_batch_2k.csv"', '"../traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv"')
    text = text.replace('"../traces/', f'"{ROOT}/traces/')
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.toml"
        path.write_text(text)
        return read_spec(path)


def run(workers: int, cells) -> tuple[float, float, str]:
    wall, cpu = time.perf_counter(), time.process_time()
    table = run_sweep(cells, workers=workers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert (table["error"] == "").all(), table[table["error"] != ""]
    csv = table.to_csv(index=False, lineterminator="\n", float_format="%.6f")
    return wall, cpu, hashlib.sha256(csv.encode()).hexdigest()[:16], table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, choices=(0, 1, 2))
    args = parser.parse_args()
    cells = spec_cells()
    settings = [args.workers] if args.workers is not None else [0, 1, 2]
    print(f"\n### Sweep of {len(cells)} cells (examples/sweep.toml on the 30,731 requests of the ShareGPT stats trace a cell)\n")
    print("| run | wall s | this process CPU s | table sha256 |")
    print("|---|---:|---:|---|")
    walls, table = {}, None
    for workers in settings:
        wall, cpu, digest, table = run(workers, cells)
        walls[workers] = wall
        print(f"| {'serial (no Ray)' if workers == 0 else f'local Ray, {workers} worker' + ('s' if workers > 1 else '')} | "
              f"{wall:,.1f} | {cpu:,.1f} | {digest} |", flush=True)
    if 1 in walls and 2 in walls:
        print(f"\nScaling ratio wall(1 worker) / wall(2 workers): {walls[1] / walls[2]:.2f}")
    if args.workers is None:
        print("\nFirst rows of the table:\n")
        print("".join(to_markdown(table).splitlines(keepends=True)[:8]))
