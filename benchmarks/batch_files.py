"""Benchmark: loading a 1,000,000-line OpenAI batch file, CPU time and peak memory.

    python benchmarks/batch_files.py [--lines 1000000] [--keep FILE]

Writes a batch file of chat requests (the bundled GSM8K test questions, cycled, with a
system prompt; custom_id "q-<line>", max_tokens 512; every 50th line has n = 2) into a
temporary folder, then loads it in a fresh Python process per step, so each figure is
that step's alone:

- ``json``: reading every line with ``json.loads`` and nothing else, the floor any loader pays;
- ``load_trace``: parsing, checking every line, estimating prompt tokens, building the table;
- ``batch_lines``: the raw lines with their ids, what `solve --split-dir` reads to cut files.

Each step reports the child's own CPU seconds (user + system) and peak resident memory
(`resource.getrusage`, ru_maxrss), next to the file's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "Solve the grade-school math problem step by step. End with a line '#### <answer>'."

STEPS = {
    "json": "import json\nwith open(PATH, 'rb') as f:\n    for line in f: json.loads(line)",
    "load_trace": "from optimizer import load_trace\nload_trace(PATH)",
    "batch_lines": "from optimizer.traces.batch import batch_lines\nbatch_lines(PATH)",
}


def write_batch(path: Path, lines: int) -> None:
    with open(ROOT / "traces" / "gsm8k_test.jsonl", encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for line in f]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            body = {
                "model": "llama2-70b",
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Problem {i}: {questions[i % len(questions)]}"}],
                "max_tokens": 512,
            }
            if i % 50 == 0:
                body["n"] = 2
            out.write(json.dumps({"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")


def run_step(code: str, path: Path) -> tuple[float, float]:
    """CPU seconds and peak memory (MiB) of one fresh process running `code` on `path`,
    as that process's own resource usage reports them (interpreter start-up included)."""
    program = (
        f"import resource, sys\nsys.path.insert(0, {str(ROOT)!r})\nPATH = {str(path)!r}\n{code}\n"
        "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True)
    cpu_s, peak_kib = done.stdout.split()
    return float(cpu_s), float(peak_kib) / 1024  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Write the batch file here and keep it.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or Path(folder) / "batch.jsonl"
        write_batch(path, args.lines)
        print(f"{args.lines:,} lines, {path.stat().st_size / 2**20:,.0f} MiB, python {sys.version.split()[0]}")
        print(f"{'step':12} {'CPU s':>7} {'peak MiB':>9}")
        for name in ("json", "load_trace", "batch_lines"):
            cpu_s, peak_mib = run_step(STEPS[name], path)
            print(f"{name:12} {cpu_s:7.2f} {peak_mib:9,.0f}")


if __name__ == "__main__":
    main()
