"""Benchmark of time limits: does `solve(..., time_limit_s=S)` (estimates, bounds, incumbent,
model, solver, extraction, timing: the whole planning step) end within 1.1 S + 1 s?

    python benchmarks/time_limits.py                              # cp-sat, scip, cbc; 10k, 100k, 1M; 8 and 64 replicas
    python benchmarks/time_limits.py --sizes 10000 --backends cp-sat --limit 10

Requests are seeded resamples of the bundled ShareGPT batch (as in benchmarks/planner.py),
offline, on mixed fleets of llama2-70b replicas (half H100-TP4, half A100-TP4). Each row is
one `solve` call in a fresh child process (so one run's memory does not slow the next):
its wall seconds, its CPU seconds (with the solver's child processes), whether the wall
clock cut the solver, and whether it met the target.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEETS = {8: "h100-tp4:4,a100-tp4:4", 64: "h100-tp4:32,a100-tp4:32"}


def one_run(size: int, replicas: int, backend: str, limit_s: float) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from planner import sample

    from optimizer import parse_replicas, solve

    requests = sample(size)
    cluster = parse_replicas(FLEETS[replicas])

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0, wall0 = cpu(), time.perf_counter()
    result = solve(requests, cluster, solver=backend, time_limit_s=limit_s)
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    return {"requests": size, "replicas": replicas, "backend": backend, "limit_s": limit_s, "wall_s": wall, "cpu_s": used,
            "status": result.status, "formulation": result.formulation, "cut": result.wall_clock_cut,
            "ratio": result.ratio_to_bound, "within": wall <= 1.1 * limit_s + 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--replicas", default="8,64")
    parser.add_argument("--backends", default="cp-sat,scip,cbc")
    parser.add_argument("--limit", type=float, default=10.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.one:
        size, replicas, backend = args.one.split(":")
        print(json.dumps(one_run(int(size), int(replicas), backend, args.limit)))
        return
    print(f"`solve --time-limit {args.limit:g}`: the whole planning step; target wall <= {1.1 * args.limit + 1:.1f} s\n")
    print("| requests | replicas | backend | model | wall s | CPU s | wall clock cut | makespan / bound | within target |")
    print("|---:|---:|---|---|---:|---:|---|---:|---|")
    for size in map(int, args.sizes.split(",")):
        for replicas in map(int, args.replicas.split(",")):
            for backend in args.backends.split(","):
                done = subprocess.run([sys.executable, __file__, "--limit", str(args.limit), "--one", f"{size}:{replicas}:{backend}"],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"| {size:,} | {replicas} | {backend} | failed: {done.stderr.strip().splitlines()[-1:]} | | | | | no |", flush=True)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"| {size:,} | {replicas} | {backend} | {r['formulation']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                      f"{'yes' if r['cut'] else 'no'} | {r['ratio']:.4f} | {'yes' if r['within'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
