"""Command line of the fleet optimizer: a thin typer app over the `optimizer` package.

Run ``python cli.py --help``. Each command lives in its own module of `commands/`, a few
lines over the package's API; every command turns the package's errors into one line on
stderr and exit code 1.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    # Loading pandas, OR-Tools and the kernel tables takes a moment: Ctrl-C then is one line too.
    print("error: interrupted; no output was written or changed.", file=sys.stderr)
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)

import typer  # noqa: E402

from commands import (  # noqa: E402
    bounds,
    catalog,
    compare,
    fleet,
    pcmax,
    plan,
    predict,
    profile,
    report,
    simulate,
    solve,
    sweep,
    trace,
)
from commands.common import OneLineErrors  # noqa: E402

signal.signal(signal.SIGINT, signal.default_int_handler)

app = typer.Typer(
    help="Plan LLM inference across a fleet of GPU replicas.",
    epilog="Example: python cli.py solve traces/sharegpt_batch_2k.csv --out plan.csv",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
# Top-level commands, in the order `--help` lists them.
for module in (solve, pcmax, bounds, simulate, compare, report, predict, catalog, fleet, sweep):
    app.add_typer(module.app)
app.add_typer(trace.app, name="trace")
app.add_typer(plan.app, name="plan")
app.add_typer(profile.app, name="profile")

if __name__ == "__main__":
    app()
