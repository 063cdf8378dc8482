"""Benchmark of the planner: quality against the lower bound, few requests per replica,
speed at scale, and every method side by side.

    python benchmarks/planner.py                 # all sections (about 15 minutes on 2 cores)
    python benchmarks/planner.py --only quality  # or: few, speed, side
    python benchmarks/planner.py --only few --before f56c886   # few requests per replica, next to an earlier commit

Instances come from the bundled ShareGPT token counts (Llama-2 tokenizer): the whole file
(30,731 requests), or seeded resamples of it for other sizes, as offline batches on
llama2-70b replicas. Every figure is makespan / lower bound, where both come from the same
performance model (`optimizer.fleet.estimates`, `optimizer.planning.bounds`); times are wall clock on
this machine (2 cores, shared), so compare rows of one run rather than absolute times.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_trace, parse_replicas, solve, validate_plan  # noqa: E402
from optimizer.planning.backends import available_backends  # noqa: E402
from optimizer.planning.pcmax import solve_pcmax  # noqa: E402

SHAREGPT = ROOT / "traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
MIXED = "h100-tp4:4,a100-tp4:4"
SEED = 2026


def sample(num_requests: int, seed: int = SEED) -> pd.DataFrame:
    """num_requests rows drawn with replacement from the ShareGPT batch (seeded)."""
    source = load_trace(SHAREGPT).requests
    rows = np.random.default_rng(seed).integers(0, len(source), num_requests)
    requests = source.iloc[rows].reset_index(drop=True)
    requests["request_id"] = "r" + pd.Series(np.arange(num_requests)).astype(str)
    return requests


def row(label: str, result, elapsed_s: float) -> str:
    return (
        f"| {label} | {result.objective:,.2f} | {result.lower_bound:,.2f} | {result.ratio_to_bound:.5f} | "
        f"{result.status} | {elapsed_s:.1f} |"
    )


HEADER = "| method | makespan s | lower bound s | makespan / bound | status | wall s |\n|---|---:|---:|---:|---|---:|"


def run(requests, cluster, **options):
    started = time.perf_counter()
    result = solve(requests, cluster, **options)
    elapsed = time.perf_counter() - started
    validate_plan(result.plan, requests, cluster)
    return result, elapsed


def quality() -> None:
    print("\n### Quality: ShareGPT, 30,731 requests, 4 H100-TP4 + 4 A100-TP4 (llama2-70b), 60 s limit\n")
    requests, cluster = load_trace(SHAREGPT).requests, parse_replicas(MIXED)
    print(HEADER)
    for backend in available_backends():
        print(row(f"planner ({backend})", *run(requests, cluster, solver=backend, time_limit_s=60)), flush=True)


FEW_CASES = [("h100-tp4:4", 8), ("h100-tp4:4", 12), ("h100-tp4:8", 40), ("h100-tp4:16", 48), ("h100-tp4:32", 80),
             ("h100-tp4:2,a100-tp4:2", 12), ("h100-tp4:4,a100-tp4:4", 24), ("h100-tp4:8,a100-tp4:8", 48), ("h100-tp4:8,a100-tp4:8", 80)]


def few_case(number: int) -> None:
    """One few-requests case with this checkout's planner, as JSON (run in the earlier commit too)."""
    spec, n = FEW_CASES[number]
    requests, cluster = sample(n, seed=SEED + number), parse_replicas(spec)
    best, elapsed = run(requests, cluster, solver="cp-sat", time_limit_s=10)
    lpt, _ = run(requests, cluster, solver="lpt")
    print(json.dumps({"objective": best.objective, "status": best.status, "bound": best.bounds.best_s, "proven": best.lower_bound,
                      "lpt": lpt.objective, "elapsed_s": elapsed}))


def few(before: str = "") -> None:
    """Few requests per replica: this planner against LPT and, with `before`, the planner of an
    earlier commit (run from a git worktree of it, same requests, in the same run)."""
    import tempfile

    print("\n### Few requests per replica (2 to 5), 10 s limit, CP-SAT\n")
    print("Requests sampled from ShareGPT. Ratios use the physical lower bound; 'proven' means the")
    print("planner proved its plan optimal for the planning model" + (f"; 'before' is commit {before}." if before else "."), "\n")
    print("| replicas | requests | LPT / bound | before / bound | before proven | planner / bound | planner vs before | proven | wall s |")
    print("|---|---:|---:|---:|---|---:|---:|---|---:|")
    worktree = None
    if before:
        worktree = Path(tempfile.mkdtemp(prefix="planner-before-")) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), before], cwd=ROOT, check=True, capture_output=True)
        # The earlier commit's benchmark may lack --few-case: give it this one.
        (worktree / "benchmarks" / "planner_few.py").write_text(Path(__file__).read_text())
    try:
        for number, (spec, n) in enumerate(FEW_CASES):
            now = _few_json(ROOT / "benchmarks" / "planner.py", number, ROOT)
            then = _few_json(worktree / "benchmarks" / "planner_few.py", number, worktree) if worktree else None
            bound = now["bound"]
            print(
                f"| {spec} | {n} | {now['lpt'] / bound:.4f} | "
                + (f"{then['objective'] / bound:.4f} | {'yes' if then['status'] == 'OPTIMAL' else 'no'} | " if then else "- | - | ")
                + f"{now['objective'] / bound:.4f} | " + (f"{now['objective'] / then['objective'] - 1:+.2%}" if then else "-")
                + f" | {'yes' if now['status'] == 'OPTIMAL' else 'no'} | {now['elapsed_s']:.1f} |",
                flush=True,
            )
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    print("\nPure P||Cmax, processing times uniform in 1..100 (seeded), 10 s limit, CP-SAT:\n")
    print("| machines | jobs | LPT | planner | lower bound | status | wall s |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    rng = np.random.default_rng(SEED)
    for m, per_machine in ((5, 2), (5, 3), (10, 3), (10, 4), (20, 5), (50, 5)):
        times = rng.integers(1, 101, m * per_machine).astype(float)
        lpt = solve_pcmax(m, times, solver="lpt")
        started = time.perf_counter()
        best = solve_pcmax(m, times, solver="cp-sat", time_limit_s=10)
        elapsed = time.perf_counter() - started
        print(f"| {m} | {m * per_machine} | {lpt.makespan} | {best.makespan} | {best.lower_bound} | {best.status} | {elapsed:.1f} |", flush=True)


def _few_json(script: Path, number: int, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, str(script), "--few-case", str(number)], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed_case(num_requests: int, num_replicas: int, time_limit_s: float) -> None:
    """One speed case, in its own process so that its peak memory is its own."""
    requests = sample(num_requests)
    cluster = parse_replicas(f"h100-tp4:{num_replicas // 2},a100-tp4:{num_replicas - num_replicas // 2}")
    result, elapsed = run(requests, cluster, solver="cp-sat", time_limit_s=time_limit_s)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"elapsed_s": elapsed, "peak_mb": peak_mb, "ratio": result.ratio_to_bound, "status": result.status,
                      "incumbent_ratio": result.incumbent / result.lower_bound, "formulation": result.formulation}))


def speed() -> None:
    print("\n### Speed: resampled ShareGPT, half H100-TP4 and half A100-TP4 replicas, CP-SAT\n")
    print("| requests | replicas | time limit s | wall s (solve + validate) | peak memory MB | makespan / bound | heuristic / bound |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, m, limit in ((100_000, 64, 20.0), (1_000_000, 256, 60.0)):
        out = subprocess.run([sys.executable, __file__, "--speed-case", str(n), str(m), str(limit)], capture_output=True, text=True, check=True)
        case = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {n:,} | {m} | {limit:.0f} | {case['elapsed_s']:.1f} | {case['peak_mb']:,.0f} | {case['ratio']:.5f} | {case['incumbent_ratio']:.5f} |", flush=True)


def side_by_side() -> None:
    print("\n### Side by side: ShareGPT, 30,731 requests, 4 H100-TP4 + 4 A100-TP4, 60 s limit each\n")
    requests, cluster = load_trace(SHAREGPT).requests, parse_replicas(MIXED)
    print(HEADER)
    for heuristic in ("round-robin", "least-loaded", "lpt"):
        print(row(heuristic, *run(requests, cluster, solver=heuristic)), flush=True)
    for backend in available_backends():
        print(row(f"per-request MIP ({backend})", *run(requests, cluster, solver=backend, formulation="per-request", time_limit_s=60)), flush=True)
    for backend in available_backends():
        print(row(f"planner, class MIP ({backend})", *run(requests, cluster, solver=backend, time_limit_s=60)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["quality", "few", "speed", "side"])
    parser.add_argument("--speed-case", nargs=3, metavar=("REQUESTS", "REPLICAS", "LIMIT"), help=argparse.SUPPRESS)
    parser.add_argument("--few-case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--before", default="", help="few: also run this earlier commit's planner (e.g. f56c886)")
    args = parser.parse_args()
    if args.few_case is not None:
        few_case(args.few_case)
        return
    if args.speed_case:
        speed_case(int(args.speed_case[0]), int(args.speed_case[1]), float(args.speed_case[2]))
        return
    sections = {"quality": quality, "few": lambda: few(args.before), "speed": speed, "side": side_by_side}
    for name, section in sections.items():
        if args.only in (None, name):
            section()


if __name__ == "__main__":
    main()
