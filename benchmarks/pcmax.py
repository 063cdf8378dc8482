"""Benchmark of the exact P||Cmax core on literature instance classes, next to LPT and to the
`pcmax` of an earlier commit, run in the same benchmark run.

    python benchmarks/pcmax.py                          # all classes, 10 s per instance
    python benchmarks/pcmax.py --before f56c886         # the commit to compare with
    python benchmarks/pcmax.py --instances 4 --classes e3,nu100   # a quick look

Instances are regenerated, with a fixed seed, after the class descriptions of the papers
(the published files are not bundled here; [our reading] of each generator):

- ``franca-1-100``, ``franca-20-100``, ``franca-50-100``: Franca, Gendreau, Laporte & Muller
  (1994), times uniform in [1,100], [20,100], [50,100]; m in {5, 10, 25}, n in {50, 100, 500}.
- ``nu100``, ``nu1000``: Frangioni, Necciari & Scutella (2004) non-uniform: 98% of the times
  uniform in [0.9 pmax, pmax], 2% in [1, 0.2 pmax], pmax = 100 or 1000; m in {5, 10, 20},
  n in {50, 100, 500, 1000}.
- ``e2``: the E2 class (Gupta & Ruiz-Torres 2001, as used by Dell'Amico et al. 2008): times
  uniform in [100, 800], m in {2, 3, 4, 6, 8, 10}, n in {10, 30, 50, 100}.
- ``e3``: the E3 class (same sources): times uniform in [20, 50], m in {3, 5, 8, 10},
  n in {3m+1, 3m+2, 4m+1, 4m+2, 5m+1, 5m+2}: few jobs per machine, hard for LPT.
- ``many-machines``: 50 or 100 machines with n in {2m+1, 2.5m, 3m+1}, times uniform in
  [1, 1000] (the regime of the issue's "50 or more machines, few jobs each").

Columns per class: share proven optimal and mean gap to the best lower bound any method
proved (an upper bound on the gap to the optimum, exact where a method proved it), for
LPT, the earlier commit's `pcmax` and this one, with CPU seconds per instance. The earlier
commit runs as a subprocess of its own `cli.py` (in a git worktree), one per instance,
so that its crashes (SIGABRT) are counted, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.planning.pcmax import solve_pcmax  # noqa: E402

SEED = 20
CLASSES = ("franca-1-100", "franca-20-100", "franca-50-100", "nu100", "nu1000", "e2", "e3", "many-machines")


def generate(name: str, count: int, seed: int = SEED) -> list[tuple[str, int, np.ndarray]]:
    """`count` instances of a class, cycling over its (m, n) grid, seeded by class and index."""
    rng = np.random.default_rng([seed, CLASSES.index(name)])
    out = []
    if name.startswith("franca"):
        low = int(name.split("-")[1])
        grid = [(m, n) for m in (5, 10, 25) for n in (50, 100, 500)]
        draw = lambda n: rng.integers(low, 101, n)  # noqa: E731
    elif name.startswith("nu"):
        pmax = int(name[2:])
        grid = [(m, n) for m in (5, 10, 20) for n in (50, 100, 500, 1000) if n > 2 * m]

        def draw(n):
            big = rng.random(n) < 0.98
            return np.where(big, rng.integers(int(0.9 * pmax), pmax + 1, n), rng.integers(1, int(0.2 * pmax) + 1, n))
    elif name == "e2":
        grid = [(m, n) for m in (2, 3, 4, 6, 8, 10) for n in (10, 30, 50, 100) if n > m]
        draw = lambda n: rng.integers(100, 801, n)  # noqa: E731
    elif name == "e3":
        grid = [(m, k * m + r) for m in (3, 5, 8, 10) for k in (3, 4, 5) for r in (1, 2)]
        draw = lambda n: rng.integers(20, 51, n)  # noqa: E731
    elif name == "many-machines":
        grid = [(m, n) for m in (50, 100) for n in (2 * m + 1, int(2.5 * m), 3 * m + 1)]
        draw = lambda n: rng.integers(1, 1001, n)  # noqa: E731
    else:
        raise SystemExit(f"unknown class {name!r}; choose from {', '.join(CLASSES)}")
    for i in range(count):
        m, n = grid[i % len(grid)]
        out.append((f"{name}-{i}-m{m}-n{n}", m, draw(n).astype(np.int64)))
    return out


def lpt_makespan(times: np.ndarray, m: int) -> int:
    loads = np.zeros(m, dtype=np.int64)
    for p in np.sort(times)[::-1]:
        loads[np.argmin(loads)] += p
    return int(loads.max())


def run_before(worktree: Path, path: Path, time_limit_s: float) -> dict:
    """The earlier commit's `pcmax` on one instance file: makespan, bound, status, CPU s."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "cli.py", "pcmax", str(path), "--time-limit", str(time_limit_s)],
        cwd=worktree, capture_output=True, text=True, timeout=10 * time_limit_s + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    values = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    if done.returncode != 0 or "makespan" not in values:
        return {"status": f"CRASH (exit {done.returncode})", "makespan": None, "bound": None, "cpu_s": cpu}
    return {"status": values["status"], "makespan": int(values["makespan"]), "bound": int(values["lower bound"]), "cpu_s": cpu}


def run_now(m: int, times: np.ndarray, time_limit_s: float) -> dict:
    cpu0 = time.process_time() + _children_cpu()
    wall0 = time.perf_counter()
    found = solve_pcmax(m, times, time_limit_s=time_limit_s)
    return {
        "status": found.status, "makespan": found.makespan, "bound": found.lower_bound, "l0": found.l0_bound,
        "heuristic": found.heuristic_makespan, "cpu_s": time.process_time() + _children_cpu() - cpu0,
        "wall_s": time.perf_counter() - wall0, "cut": found.wall_clock_cut, "probes": len(found.probes),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=12, help="instances per class")
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--before", default="f56c886", help="commit whose pcmax is compared ('' to skip)")
    parser.add_argument("--json", type=Path, help="also write every instance's figures here")
    args = parser.parse_args()

    worktree = None
    scratch = Path(tempfile.mkdtemp(prefix="pcmax-bench-"))
    if args.before:
        worktree = scratch / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], cwd=ROOT, check=True, capture_output=True)
    rows, records = [], []
    try:
        for name in args.classes.split(","):
            per = {"lpt_opt": 0, "lpt_gap": [], "before_opt": 0, "before_gap": [], "before_cpu": [], "now_opt": 0, "now_gap": [], "now_cpu": [], "crashes": 0, "cuts": 0}
            instances = generate(name, args.instances)
            for label, m, times in instances:
                path = scratch / f"{label}.txt"
                path.write_text(f"{m}\n{len(times)}\n" + "\n".join(map(str, times.tolist())) + "\n")
                now = run_now(m, times, args.time_limit)
                then = run_before(worktree, path, args.time_limit) if worktree else None
                best_lb = max([now["bound"]] + ([then["bound"]] if then and then["bound"] is not None else []))
                lpt_c = lpt_makespan(times, m)
                per["lpt_opt"] += lpt_c <= best_lb
                per["lpt_gap"].append(lpt_c / best_lb - 1)
                per["now_opt"] += now["status"] == "OPTIMAL"
                per["now_gap"].append(now["makespan"] / best_lb - 1)
                per["now_cpu"].append(now["cpu_s"])
                per["cuts"] += bool(now["cut"])
                if then is not None:
                    per["before_cpu"].append(then["cpu_s"])
                    if then["makespan"] is None:
                        per["crashes"] += 1
                    else:
                        per["before_opt"] += then["status"] == "OPTIMAL"
                        per["before_gap"].append(then["makespan"] / best_lb - 1)
                records.append({"instance": label, "m": m, "n": len(times), "lpt": lpt_c, "best_lower_bound": best_lb, "now": now, "before": then})
                print(f"{label}: lpt {lpt_c} now {now['makespan']} ({now['status']}, {now['cpu_s']:.2f} s)"
                      + (f" before {then['makespan']} ({then['status']}, {then['cpu_s']:.2f} s)" if then else "") + f" bound {best_lb}", file=sys.stderr, flush=True)
            k = len(instances)
            rows.append((name, k, per))
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    print(f"P||Cmax classes, {args.instances} instances each, --time-limit {args.time_limit:g} s; gap = makespan / best proven lower bound - 1\n")
    print("| class | n inst | LPT optimal | LPT mean gap | before optimal | before mean gap | before CPU s/inst | now optimal | now mean gap | now CPU s/inst |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals = {"k": 0, "lpt": 0, "before": 0, "now": 0, "lg": [], "bg": [], "ng": []}
    for name, k, per in rows:
        before_opt = f"{per['before_opt'] / k:.0%}" + (f" ({per['crashes']} crashed)" if per["crashes"] else "") if per["before_cpu"] else "-"
        before_gap = f"{np.mean(per['before_gap']):.3%}" if per["before_gap"] else "-"
        before_cpu = f"{np.mean(per['before_cpu']):.2f}" if per["before_cpu"] else "-"
        print(f"| {name} | {k} | {per['lpt_opt'] / k:.0%} | {np.mean(per['lpt_gap']):.3%} | {before_opt} | {before_gap} | {before_cpu} | "
              f"{per['now_opt'] / k:.0%} | {np.mean(per['now_gap']):.3%} | {np.mean(per['now_cpu']):.2f} |")
        totals["k"] += k
        totals["lpt"] += per["lpt_opt"]
        totals["before"] += per["before_opt"]
        totals["now"] += per["now_opt"]
        totals["lg"] += per["lpt_gap"]
        totals["bg"] += per["before_gap"]
        totals["ng"] += per["now_gap"]
    k = totals["k"]
    print(f"| all | {k} | {totals['lpt'] / k:.0%} | {np.mean(totals['lg']):.3%} | "
          f"{(totals['before'] / k if worktree else float('nan')):.0%} | {(np.mean(totals['bg']) if totals['bg'] else float('nan')):.3%} | | "
          f"{totals['now'] / k:.0%} | {np.mean(totals['ng']):.3%} | |")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=float))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
