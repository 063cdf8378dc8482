"""What every command shares: the terminal, the options, the error boundary and the steps
that several commands take in the same way (load a trace, predict lengths, read deviations).

Each command module imports from here; nothing here imports a command.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.status import Status

import optimizer
from optimizer.common.errors import OptimizerError
from optimizer.fleet.calibration import load_profiles
from optimizer.fleet.sources import profile_for
from optimizer.serving.deviation import Deviations, parse_failure, parse_slowdown
from optimizer.serving.predictor import (
    LengthBelief,
    fit_predictor,
    noisy_oracle,
    with_predictions,
)

# Wide enough for the tables when output goes to a file or a pipe (rich's default there is 80).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


#: Largest seed: CP-SAT takes a 32-bit signed seed, numpy any non-negative one.
MAX_SEED = 2**31 - 1


def number_in(low: float, high: float = math.inf, *, above: bool = False, integer: bool = False):
    """A typer callback that accepts a finite number in [low, high] (or (low, high] with
    `above`), and None; anything else (nan, inf, out of range) is one line naming the option."""

    def check(value):
        if value is None or (isinstance(value, (int, float)) and math.isfinite(value)
                             and (value > low if above else value >= low) and value <= high):
            return value
        bounds = f"{'above' if above else 'at least'} {low:g}" + (f" and at most {high:,.0f}" if float(high).is_integer() else f" and at most {high:g}" if high < math.inf else "")
        raise typer.BadParameter(f"must be a finite {'whole ' if integer else ''}number {bounds}, got {value}.")

    return check


# Options shared by every command that reads a trace.
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", metavar="FORMAT", help=f"Trace format, detected from the columns when omitted: {', '.join(optimizer.FORMATS)}."),
]
RateOpt = Annotated[
    Optional[float],
    typer.Option("--arrival-rate", metavar="PER_S", callback=number_in(0, above=True),
                 help="Length-only tables: draw Poisson arrivals at this many requests/s (default: offline batch)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", metavar="N", callback=number_in(0, MAX_SEED, integer=True), help="Seed of every random draw.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", metavar="MODEL", help="Serve every request with this model, whatever the trace says.")]
SharedPrefixOpt = Annotated[
    Optional[int],
    typer.Option("--shared-prefix-tokens", metavar="N", callback=number_in(1, 2**24, integer=True),
                 help="Every prompt begins with the same N tokens (a system prompt): engines can reuse their KV cache."),
]
PrefixTextOpt = Annotated[
    Optional[Path],
    typer.Option("--prefix-text", metavar="FILE", help="Text formats (GSM8K): this text (few-shot examples, a system prompt) precedes every prompt, shared."),
]
SamplesOpt = Annotated[
    Optional[int],
    typer.Option("--samples-per-prompt", metavar="K", callback=number_in(1, 4096, integer=True),
                 help="Run every request K times (ids '<id>#s<k>'), the samples sharing their prompt (RL rollouts)."),
]
ReplicasOpt = Annotated[
    str,
    typer.Option("--replicas", metavar="SPEC", help="Cluster: inline [MODEL@]GPU-tpN:COUNT groups, e.g. 'h100-tp4:4,a100-tp4:4', or a .toml/.json cluster file."),
]
ProfilesOpt = Annotated[
    Optional[Path],
    typer.Option("--profiles", metavar="FILE", help="Profile file (.json, from `profile calibrate`) or GPU measurements CSV (Splitwise perf_model columns, fitted) used for the configurations they cover."),
]
EngineOpt = Annotated[
    str,
    typer.Option("--engine", metavar="NAME[==VERSION]", help="Serving engine of the kernel tables: vllm, sglang, trtllm (default: the bundled measurements where they exist, else the newest vLLM the tables have)."),
]
SourceOpt = Annotated[
    str,
    typer.Option("--source", metavar="SOURCE", help="Where iteration times come from: auto, measured, kernels, roofline."),
]
TraceArg = Annotated[Path, typer.Argument(metavar="TRACE", help="Trace file (CSV, JSON lines or Parquet).", show_default=False)]
LengthErrorOpt = Annotated[
    Optional[float],
    typer.Option("--length-error", metavar="SIGMA", callback=number_in(0, 10),
                 help="Noisy-oracle predictions: predicted = actual x lognormal error with this sigma (seeded by --seed); plans use them."),
]
PredictorOpt = Annotated[
    Optional[Path],
    typer.Option("--predictor", metavar="HISTORY", help="History trace (known output lengths) to fit the output-length predictor on; plans use its predictions."),
]
JitterOpt = Annotated[float, typer.Option("--jitter", metavar="SECONDS", callback=number_in(0),
                                          help="Arrival jitter: each request arrives at max(0, planned + jitter x N(0,1)) seconds (seeded).")]
SlowOpt = Annotated[list[str], typer.Option("--slow", metavar="REPLICA@SECONDS:FACTOR", help="The replica's iterations take FACTOR times as long from then on (repeatable).")]
FailOpt = Annotated[list[str], typer.Option("--fail", metavar="REPLICA@SECONDS", help="The replica fails then; its requests are placed again (repeatable).")]
# Issue 14: targets are SECONDS or length-scaled BASE+PER/token texts (optimizer.serving.slo).
SloTtftOpt = Annotated[Optional[str], typer.Option("--slo-ttft", metavar="TARGET",
                                                   help="Time-to-first-token target of every request without its own: seconds, or scaled with the prompt, e.g. 0.5s+1ms/token.")]
SloTbtOpt = Annotated[Optional[str], typer.Option("--slo-tbt", metavar="TARGET",
                                                  help="Mean time-between-tokens target (s) of every request without its own.")]
SloE2eOpt = Annotated[Optional[str], typer.Option("--slo-e2e", metavar="TARGET",
                                                  help="End-to-end latency target of every request without its own: seconds, or scaled with the output, e.g. 30s+50ms/token.")]
ContextOpt = Annotated[str, typer.Option("--context", metavar="POLICY",
                                         help="Requests longer than the model's context window: error (default), drop (listed by id) or truncate (their prompts cut).")]

SolverOpt = Annotated[str, typer.Option("--solver", metavar="NAME", help="Solver backend (cp-sat, scip, cbc) or heuristic (lpt, least-loaded, round-robin); see `solvers`.")]
#: A week: longer limits are almost certainly a typo (and overflow some solvers' timers).
MAX_TIME_LIMIT_S = 7 * 24 * 3600.0
TimeLimitOpt = Annotated[float, typer.Option("--time-limit", metavar="SECONDS", callback=number_in(0, MAX_TIME_LIMIT_S, above=True),
                                             help="Wall-clock seconds for the whole planning step.")]
DeterministicOpt = Annotated[bool, typer.Option(
    "--deterministic", metavar="",
    help="Never let the wall clock stop the solver: the same answer on any machine and load, even if it takes longer than --time-limit.",
)]
#: Said when the wall clock, not the solver's deterministic budget, ended the search.
WALL_CLOCK_CUT = ("the time limit stopped the solver before its deterministic budget; on a loaded machine "
                  "the plan may differ between runs (use --deterministic for the same bytes every time).")


def solver_warnings(result) -> None:
    """Print a planning result's warnings (a solver failure, a wall-clock cut) on stderr."""
    if result.message:
        typer.echo(f"warning: {result.message}", err=True)
    if result.wall_clock_cut:
        typer.echo(f"warning: {WALL_CLOCK_CUT}", err=True)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="Print nothing but errors (no progress, no summary).")]

class OneLineErrors(typer.core.TyperGroup):
    """The app's outer error boundary: a mistake on the command line (an unknown option, a
    value of the wrong type, a missing file argument) is one line on stderr and exit code 1,
    like every other error, not a usage box with exit code 2; an interrupt (Ctrl-C) is one
    line and exit code 130, and leaves every output file as it was (outputs are renamed
    into place only when complete)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        tidy_help(self)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's own click errors: usage, bad values, no such command
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # the help text, as before
                code = 0
            else:
                typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
                code = 1
        except typer.Abort:
            code = 130
        except MemoryError:
            typer.echo("error: out of memory; nothing was written. Try a smaller trace or fleet.", err=True)
            code = 1
        except Exception as exc:  # a bug of ours: still one line, and nothing half-written
            if os.environ.get("FLEET_OPTIMIZER_DEBUG"):
                raise
            where = traceback.extract_tb(exc.__traceback__)[-1]
            typer.echo(f"error: internal error {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno}; "
                       "nothing was written; set FLEET_OPTIMIZER_DEBUG=1 for the traceback and please report it).", err=True)
            code = 1
        if code == 130:
            typer.echo("error: interrupted; no output was written or changed.", err=True)
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


#: Metavars shown in help where an option names none: the classic click words, not typer's
#: ``<list[Path]>`` or ``<bool>``.
_METAVARS = {"<path>": "PATH", "<float>": "NUMBER", "<int>": "N", "<str>": "TEXT", "<list[Path]>": "PATH", "<list[str]>": "TEXT"}


def tidy_help(command) -> None:
    """Give every option of `command` and its subcommands a plain metavar (none for flags),
    the built-in --help option included."""
    from typer._click import Context  # the help option exists only once asked for with a context

    for param in [*command.params, command.get_help_option(Context(command))]:
        if param is not None and getattr(param, "metavar", "") is None and hasattr(param, "display_type"):
            param.metavar = "" if getattr(param, "is_flag", False) else _METAVARS.get(param.display_type(Context(command)))
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)


@contextmanager
def user_errors() -> Iterator[None]:
    """Show an `OptimizerError` as one line on stderr and exit with code 1."""
    try:
        yield
    except OptimizerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def read_trace(path: Path, format: str | None, arrival_rate: float | None, seed: int, model: str | None,
               shared_prefix_tokens: int | None = None, samples_per_prompt: int | None = None,
               prefix_text: Path | None = None) -> optimizer.Trace:
    return optimizer.load_trace(path, format=format, arrival_rate=arrival_rate, seed=seed, model=model,
                                shared_prefix_tokens=shared_prefix_tokens, samples_per_prompt=samples_per_prompt,
                                prefix_text=prefix_text)


def with_predicted_lengths(requests, length_error: float | None, history: Path | None, seed: int):
    """The trace with the predictions plans use, and the belief about their error
    (`optimizer.serving.predictor`): noisy oracle, fitted predictor, or the trace's own column."""
    if length_error is not None and history is not None:
        raise OptimizerError("Give either --length-error or --predictor, not both.")
    if length_error is not None:
        predicted = noisy_oracle(requests["output_tokens"].to_numpy(dtype=float), length_error, seed)
        return with_predictions(requests, predicted), LengthBelief.lognormal(length_error)
    if history is not None:
        predictor = fit_predictor(optimizer.load_trace(history).requests)
        return with_predictions(requests, predictor.predict(requests)), predictor.belief
    return requests, LengthBelief.exact()


def parse_deviations(jitter: float, slow: list[str], fail: list[str], seed: int, cluster) -> Deviations:
    deviations = Deviations(jitter, tuple(parse_slowdown(t) for t in slow), tuple(parse_failure(t) for t in fail), seed)
    deviations.check(cluster)
    return deviations


def read_profiles(path: Path | None) -> dict | None:
    """The user's profiles (a profile file or measurements), taking precedence over the bundled sources."""
    return None if path is None else load_profiles(path)


def print_sources(cluster, profiles) -> None:
    """One line per replica kind: where its iteration times come from, and the fit error."""
    for number, replica in enumerate(cluster.first_of_each_kind):
        kind = replica.kind
        profile = profile_for(replica, profiles)
        error = "" if profile.prefill_error_pct != profile.prefill_error_pct or profile.source.startswith("roofline") else \
            f" (fit {profile.prefill_error_pct:.1f}% prefill, {profile.decode_error_pct:.1f}% decode)"
        out.print(f"{'Times' if number == 0 else '':9}{kind}: {profile.source}{error}")


def bounds_line(bounds: optimizer.Bounds) -> str:
    parts = [f"{name} {value:,.1f} s" + (" (binds)" if name == bounds.binding else "")
             for name, value in (("work", bounds.work_s), ("chain", bounds.chain_s), ("pcmax", bounds.pcmax_s))]
    return ", ".join(parts)


class LiveStatus:
    """A live line on stderr while long work runs, on interactive terminals only: the
    solver's incumbent, bound and gap while planning, the simulated time while simulating."""

    def __init__(self, enabled: bool, label: str = ""):
        self.status = Status(label or "working ...", console=Console(stderr=True)) if enabled else None
        self.label = label
        self.shown_at = 0.0

    def __enter__(self) -> "LiveStatus":
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.stop()

    @property
    def solving(self):
        """Progress callback of `optimizer.planning.solve`, or None when nothing is shown."""
        return self._solving if self.status is not None else None

    @property
    def simulating(self):
        """Progress callback of `optimizer.reporting.compare` (what runs, simulated seconds), or None."""
        return self._simulating if self.status is not None else None

    def _solving(self, incumbent: float, bound: float, elapsed_s: float) -> None:
        gap = incumbent / bound - 1 if bound > 0 else float("inf")
        self.status.update(f"incumbent {incumbent:,.2f} s  bound {bound:,.2f} s  gap {gap:.3%}  elapsed {elapsed_s:.1f} s")

    def _simulating(self, label: str, now_s: float) -> None:
        # A new step (time 0) shows at once; the clock at most 10 times a second.
        if now_s == 0.0 or time.monotonic() - self.shown_at > 0.1:
            self.shown_at = time.monotonic()
            self.status.update(f"{label}  simulated time {now_s:,.1f} s" if now_s else label)
