"""Writing output files so that a failure never leaves a half-written file behind, and a
write never destroys what the user's path names.

- A regular file (new or existing) is written to a temporary file beside it and renamed
  into place only when the writer succeeded; an existing file keeps its permissions.
- A symbolic link is followed deliberately: the file it points to is replaced, the link
  stays a link.
- A device, named pipe or socket (``/dev/null``, ``/dev/stdout``, a FIFO) is written
  directly: renaming over it would replace the device node with a regular file.
- Inside `all_or_nothing()`, every rename waits until the whole block succeeded, so a
  command with several outputs writes all of them or none.
"""

from __future__ import annotations

import contextvars
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from optimizer.common.errors import OptimizerError

#: Renames held back by the innermost `all_or_nothing()` block: (temporary, final) paths.
_pending: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("pending_renames", default=None)


def check_folder(path: str | Path) -> Path:
    """The folder `path` would be written into; an error if it does not exist (checked
    before long work, so that a bad output path fails at once)."""
    return Path(check_output(path)).parent


def check_output(path: str | Path) -> Path:
    """`path` as the file it will write (symbolic links followed), or one-line error if it
    cannot be written: an empty name, a directory, a missing or unwritable folder.

    Commands call this for every output before any work, so a bad path costs nothing.
    """
    if str(path).strip() == "":
        raise OptimizerError("An output path is empty; give a file name.")
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    if target.is_dir():
        raise OptimizerError(f"{given}: is a directory; give a file name inside it.")
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        if not os.access(target, os.W_OK):
            raise OptimizerError(f"{given}: cannot write to it (permission denied).")
        return target  # a device, FIFO or socket: written in place
    folder = target.parent
    if not folder.is_dir():
        raise OptimizerError(f"{given}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OptimizerError(f"{given}: cannot write there (permission denied).")
    return target


@contextmanager
def all_or_nothing() -> Iterator[None]:
    """Hold back the renames of every `atomic_output` inside the block until it succeeds;
    on an error none of them happens and the temporary files are removed."""
    outer = _pending.get()
    held: list[tuple[Path, Path]] = []
    token = _pending.set(held)
    try:
        yield
    except BaseException:
        for tmp, _ in held:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _pending.reset(token)
    if outer is not None:  # nested: the outermost block decides
        outer.extend(held)
        return
    for tmp, final in held:
        _rename(tmp, final)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield the path to write; the written file replaces `path` only if the block succeeds.

    For a regular file the yielded path is a temporary file in the destination folder, so
    the final `os.replace` is a rename on one file system, which readers see entirely or
    not at all. For a device, FIFO or socket it is the path itself.
    """
    given = Path(path)
    target = check_output(given)
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        with _write_errors(given):
            yield target
        return
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OptimizerError(f"{given}: cannot write there ({exc.strerror.lower()}).") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _write_errors(given):
            yield tmp
        # mkstemp creates the file private (0600): keep an existing file's mode, else give
        # it what a plain open() would.
        if target.exists():
            mode = stat.S_IMODE(target.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        held = _pending.get()
        if held is not None:
            held.append((tmp, target))
            tmp = None  # the enclosing block renames or removes it
        else:
            _rename(tmp, target)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _rename(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OptimizerError(f"{final}: cannot write it ({exc.strerror.lower()}).") from None


@contextmanager
def _write_errors(given: Path) -> Iterator[None]:
    """Errors of the writer itself (a full disk, a closed pipe) as one line."""
    try:
        yield
    except OSError as exc:
        raise OptimizerError(f"{given}: writing failed ({(exc.strerror or str(exc)).lower()}).") from None
