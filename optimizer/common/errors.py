"""Exceptions of the package: every error a user can cause derives from `OptimizerError`.

The command line turns any `OptimizerError` into one line on stderr and exit code 1, so
each message is a whole sentence that names where the problem is (file, line, field).
"""

from __future__ import annotations

from pathlib import Path


class OptimizerError(Exception):
    """Base class of every error caused by input (files, options, API arguments)."""


class InputError(OptimizerError):
    """Bad content in an input file, located as precisely as the file allows.

    Rendered as ``file:line: field: message`` (the compiler convention), leaving out the
    parts that are unknown. ``line`` is the 1-based line of a text file, or, for files
    without lines (Parquet), the 1-based row, in which case ``unit`` is ``"row"``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.unit = unit
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}" if self.unit == "line" else f": row {self.line}"
            where += ": "
        elif self.line is not None:
            where = f"{self.unit} {self.line}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class TraceError(InputError):
    """A request trace that cannot be loaded."""


class PlanError(InputError):
    """A plan file that cannot be read, or a plan that breaks a rule of the validator."""


class ClusterError(OptimizerError):
    """A cluster description that names unknown hardware or impossible values."""


class ProfileError(InputError):
    """GPU measurements that cannot be fitted into a performance profile."""
