"""Per-replica batch files: a plan of a batch file cut into one runnable file per replica.

``DIR/<replica>.jsonl`` holds the input lines of the requests the plan gives that replica,
in the plan's order, byte for byte (nothing is re-serialised, so every field the runner
reads, ours or not, is as the user wrote it). ``DIR/manifest.json`` says for each replica
its model, GPU, TP, engine, how many lines and requests, the plan's estimated start and
finish, and the command that runs its file::

    vllm run-batch -i DIR/<replica>.jsonl -o OUT/<replica>.jsonl --model MODEL --tensor-parallel-size TP

A line with n > 1 is one runner request producing n completions on one engine, so it
cannot be split: it goes whole to the replica of its first request (``<custom_id>#0``),
and the manifest counts the requests the plan had put elsewhere (``moved_requests``).

Writing is atomic: every file goes into a temporary folder beside DIR, which is renamed
into place only when complete. A DIR that already exists is replaced only if it holds
nothing but an earlier split (a manifest.json and .jsonl files).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.fleet.cluster import Cluster
from optimizer.traces.batch import BatchLine, batch_lines

MANIFEST = "manifest.json"


def check_split_dir(split_dir: str | Path) -> Path:
    """The folder to write, checked before any work: its parent exists, and it is absent,
    empty, or an earlier split that may be replaced."""
    split_dir = Path(split_dir)
    if str(split_dir).strip() in ("", "."):
        raise OptimizerError("--split-dir: give a folder name (a new folder, or an earlier split to replace).")
    if not split_dir.parent.is_dir():
        raise OptimizerError(f"--split-dir {split_dir}: folder {split_dir.parent} does not exist.")
    if split_dir.exists() and not split_dir.is_dir():
        raise OptimizerError(f"--split-dir {split_dir}: is a file, not a folder.")
    if split_dir.is_dir():
        foreign = [p.name for p in split_dir.iterdir() if not (p.name == MANIFEST or p.suffix == ".jsonl") or not p.is_file()]
        if foreign:
            raise OptimizerError(
                f"--split-dir {split_dir}: holds {foreign[0]!r}, which is not from an earlier split; give a new or empty folder."
            )
    if not os.access(split_dir.parent, os.W_OK):
        raise OptimizerError(f"--split-dir {split_dir}: folder {split_dir.parent} is not writable.")
    return split_dir


def split_batch(
    batch_path: str | Path,
    plan: pd.DataFrame,
    cluster: Cluster,
    split_dir: str | Path,
    *,
    results_dir: str = "out",
) -> dict:
    """Write the per-replica batch files and the manifest; return the manifest.

    Args:
        batch_path: the batch file the plan was made for.
        plan: its plan (`optimizer.planning.plan`), one row per request.
        cluster: the cluster of the plan.
        split_dir: the folder to write (see `check_split_dir`).
        results_dir: where the manifest's commands tell the runner to write its results.

    Raises:
        OptimizerError: the plan does not match the file, or the folder cannot be written.
    """
    split_dir = check_split_dir(split_dir)
    lines = batch_lines(batch_path)
    files, manifest = _assign(lines, plan, cluster, split_dir, results_dir)
    manifest["source"] = str(batch_path)
    folder = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.", dir=split_dir.parent))
    try:
        with open(batch_path, "rb") as source:
            for replica, chosen in files.items():
                with open(folder / f"{replica}.jsonl", "wb") as f:
                    f.writelines(line.read(source) for line in chosen)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(folder, 0o777 & ~umask)  # mkdtemp makes it private; a plain mkdir would not
        for path in folder.iterdir():
            os.chmod(path, 0o666 & ~umask)
        _replace(folder, split_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return manifest


def _replace(folder: Path, split_dir: Path) -> None:
    """Rename `folder` to `split_dir`; an earlier split there is moved aside first and
    removed only once the new one is in place (put back if the rename fails)."""
    old = None
    if split_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.old.", dir=split_dir.parent))
        os.rmdir(old)
        os.rename(split_dir, old)
    try:
        os.rename(folder, split_dir)
    except OSError:
        if old is not None:
            os.rename(old, split_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _assign(lines: list[BatchLine], plan: pd.DataFrame, cluster: Cluster, split_dir: Path, results_dir: str):
    """The lines of each replica in plan order, and the manifest describing them."""
    position = {request_id: i for i, request_id in enumerate(plan["request_id"].astype(str).tolist())}
    expected = sum(line.n for line in lines)
    if expected != len(plan):
        raise OptimizerError(f"The plan has {len(plan):,} requests but the batch file has {expected:,}; plan the same file.")
    replica_of = plan["replica"].astype(str).to_numpy()
    order = plan["order"].to_numpy()
    chosen: dict[str, list[tuple[int, BatchLine]]] = {name: [] for name in cluster.names}
    moved = dict.fromkeys(cluster.names, 0)
    for line in lines:
        rows = []
        for request_id in line.request_ids:
            if request_id not in position:
                raise OptimizerError(f"Request {request_id!r} (line {line.line}) is not in the plan; plan the same file.")
            rows.append(position[request_id])
        replica = replica_of[rows[0]]
        if replica not in chosen:
            raise OptimizerError(f"The plan puts {line.request_ids[0]!r} on {replica!r}, which the cluster does not have.")
        chosen[replica].append((int(order[rows[0]]), line))
        moved[replica] += int(sum(replica_of[r] != replica for r in rows))
    start = plan.groupby("replica")["planned_start_s"].min()
    finish = plan.groupby("replica")["planned_end_s"].max()
    entries, files = [], {}
    for replica in cluster.replicas:
        ordered = [line for _, line in sorted(chosen[replica.name], key=lambda pair: (pair[0], pair[1].line))]
        entry = {
            "replica": replica.name,
            "model": replica.model,
            "gpu": replica.gpu,
            "tp": replica.tp,
            "engine": replica.engine or "vllm",
            "file": None,
            "lines": len(ordered),
            "requests": sum(line.n for line in ordered),
            "moved_requests": moved[replica.name],
            "estimated_start_s": _seconds(start.get(replica.name)),
            "estimated_finish_s": _seconds(finish.get(replica.name)),
            "command": None,
        }
        if ordered:
            files[replica.name] = ordered
            entry["file"] = str(split_dir / f"{replica.name}.jsonl")
            entry["command"] = _command(replica, ordered, entry["file"], f"{results_dir}/{replica.name}.jsonl")
        entries.append(entry)
    manifest = {
        "lines": len(lines),
        "requests": expected,
        "estimated_finish_s": _seconds(plan["planned_end_s"].max()),
        "replicas": entries,
    }
    return files, manifest


def _command(replica, lines: list[BatchLine], input_path: str, output_path: str) -> str | None:
    """The command that runs one file: vLLM's offline batch runner, serving the model the
    lines name (the runner checks each line's body.model against it)."""
    if replica.engine and not replica.engine.startswith("vllm"):
        return None  # SGLang and TensorRT-LLM have no offline batch-file runner: serve and POST
    names = sorted({line.model for line in lines if line.model})
    model = names[0] if len(names) == 1 else replica.model
    parts = ["vllm", "run-batch", "-i", input_path, "-o", output_path, "--model", model]
    if len(names) > 1:
        parts += ["--served-model-name", *names]
    if replica.tp > 1:
        parts += ["--tensor-parallel-size", str(replica.tp)]
    return shlex.join(parts)


def _seconds(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 3)
