"""Writing output files so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from optimizer.common.errors import OptimizerError


def check_folder(path: str | Path) -> Path:
    """The folder `path` would be written into; an error if it does not exist (checked
    before long work, so that a bad output path fails at once)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OptimizerError(f"{path}: folder {path.parent} does not exist.")
    return path.parent


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds.

    The temporary file lives in the destination folder so the final `os.replace` is a
    rename on the same file system, which readers see either entirely or not at all.
    """
    path = Path(path)
    folder = check_folder(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
