"""`trace stats`, `trace convert` and `trace from-results`: inspect, rewrite and rebuild request traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

import optimizer
from optimizer.common.files import check_output
from optimizer.traces.results import read_results
from commands.common import (
    PrefixTextOpt,
    SamplesOpt,
    SharedPrefixOpt,
    FormatOpt,
    ModelOpt,
    RateOpt,
    SeedOpt,
    TraceArg,
    out,
    read_trace,
    user_errors,
)

TokenizerOpt = Annotated[
    Optional[Path],
    typer.Option("--tokenizer", metavar="PATH", help="Batch files: count prompt tokens with this tokenizer.json or Hugging Face model folder (offline; its chat template applied), instead of estimating them."),
]


def read_trace_with(path: Path, format, arrival_rate, seed, model, tokenizer: Path | None,
                    shared_prefix_tokens: int | None = None, samples_per_prompt: int | None = None,
                    prefix_text: Path | None = None) -> optimizer.Trace:
    """`read_trace`, counting a batch file's prompt tokens with `tokenizer` when one is given."""
    if tokenizer is None:
        return read_trace(path, format, arrival_rate, seed, model, shared_prefix_tokens, samples_per_prompt, prefix_text)
    return optimizer.load_trace(path, format=format, arrival_rate=arrival_rate, seed=seed, model=model, tokenizer=tokenizer,
                                shared_prefix_tokens=shared_prefix_tokens, samples_per_prompt=samples_per_prompt,
                                prefix_text=prefix_text)


app = typer.Typer(
    help="Inspect and convert request traces.",
    epilog="Example: python cli.py trace stats traces/AzureLLMInferenceTrace_conv.csv",
    no_args_is_help=True,
)


@app.command("stats", epilog="Example: python cli.py trace stats traces/AzureLLMInferenceTrace_code.csv")
def trace_stats(
    trace: TraceArg,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    shared_prefix_tokens: SharedPrefixOpt = None,
    samples_per_prompt: SamplesOpt = None,
    prefix_text: PrefixTextOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Print request counts, arrival rate and token-length percentiles of a trace (and, when it
    declares shared prefixes, how much of its prefill a cache could reuse)."""
    with user_errors():
        stats = optimizer.trace_stats(read_trace_with(trace, format, arrival_rate, seed, model, tokenizer,
                                                      shared_prefix_tokens, samples_per_prompt, prefix_text))
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    out.print(f"{stats['file']} ({stats['format']} format)")
    rate = "offline batch" if stats["offline_batch"] else f"{stats['duration_s']:,.1f} s, {stats['rate_per_s']} req/s"
    out.print(f"requests  {stats['num_requests']:,} ({rate}); left out: {stats['num_excluded']:,}")
    out.print("models    " + ", ".join(f"{name} {count:,}" for name, count in stats["models"].items()))
    table = Table("tokens", "known", "mean", "p50", "p90", "p99", "max", "total")
    for column, label in (("prompt_tokens", "prompt"), ("output_tokens", "output"), ("predicted_output_tokens", "predicted")):
        figures = stats[column]
        if figures is not None:
            table.add_row(label, *(f"{figures[k]:,.0f}" if k != "mean" else f"{figures[k]:,.1f}" for k in ("known", "mean", "p50", "p90", "p99", "max", "total")))
    out.print(table)
    if "prefixes" in stats:
        p = stats["prefixes"]
        out.print(f"prefixes  unique prefill {p['unique_prompt_tokens']:,} of {p['prompt_tokens']:,} prompt tokens: an unbounded "
                  f"cache on one replica would serve {p['reusable_share']:.1%} ({p['block_tokens']}-token blocks)")
    for note in stats["notes"]:
        out.print(f"note: {note}")


@app.command("convert", epilog="Example: python cli.py trace convert traces/AzureLLMInferenceTrace_conv.csv --out conv.parquet")
def trace_convert(
    trace: TraceArg,
    out_path: Annotated[Path, typer.Option("--out", help="Native trace to write: .csv, or .parquet.", show_default=False)],
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    shared_prefix_tokens: SharedPrefixOpt = None,
    samples_per_prompt: SamplesOpt = None,
    prefix_text: PrefixTextOpt = None,
) -> None:
    """Rewrite any supported trace in the native format (CSV or Parquet); declared prefixes
    become its prefix_group and prefix_tokens columns."""
    with user_errors():
        check_output(out_path)
        loaded = read_trace_with(trace, format, arrival_rate, seed, model, tokenizer, shared_prefix_tokens, samples_per_prompt, prefix_text)
        optimizer.write_trace(loaded.requests, out_path)
    out.print(f"Wrote {out_path} ({loaded.num_requests:,} requests from the {loaded.format} trace)")


@app.command("from-results", epilog="Example: python cli.py trace from-results traces/batch/out/gsm8k.jsonl --requests traces/batch/gsm8k.jsonl --out history.csv")
def trace_from_results(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="The batch runner's output files (JSON lines with custom_id, response.body.usage, error), e.g. out/*.jsonl.", show_default=False)],
    requests_path: Annotated[Path, typer.Option("--requests", metavar="BATCH", help="The batch file that was run.", show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="Native trace to write (.csv or .parquet): every request, with the run's actual lengths.")] = Path("trace.csv"),
    tokenizer: TokenizerOpt = None,
) -> None:
    """Join a batch run's results to its input and write a trace with the actual lengths.

    The trace is the history for `predict --history` and `--predictor`. Requests that
    errored or have no result stay in it with their output length unknown, and are listed.
    """
    with user_errors():
        check_output(out_path)
        joined = read_results(results, requests_path, tokenizer=tokenizer)
        optimizer.write_trace(joined.trace.requests, out_path)
    requests = joined.trace.requests
    out.print(f"Joined   {len(results)} results file(s) to {requests_path}: {len(requests):,} requests, {joined.num_completed:,} with actual lengths")
    for note in joined.trace.notes:
        out.print(f"         {note}")
    for row in joined.failed.head(20).itertuples(index=False):
        where = f" ({row.result})" if row.result else ""
        out.print(f"{row.status:8} {row.custom_id} (line {row.line}): {row.reason}{where}")
    if len(joined.failed) > 20:
        out.print(f"         ... and {len(joined.failed) - 20:,} more")
    out.print(f"Wrote    {out_path} ({len(requests):,} requests; {len(joined.failed):,} without a result)")
