"""`predict`: fit the output-length predictor and report its error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import optimizer
from optimizer.common.files import check_output
from optimizer.serving.predictor import fit_predictor, prediction_error, split_history, with_predictions
from commands.common import (
    number_in,
    FormatOpt,
    ModelOpt,
    QuietOpt,
    RateOpt,
    SeedOpt,
    TraceArg,
    out,
    read_trace,
    user_errors,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py predict traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv --out predicted.csv")
def predict(
    trace: TraceArg,
    history: Annotated[Optional[Path], typer.Option("--history", help="Trace with known output lengths to fit on (default: the first part of TRACE itself).")] = None,
    holdout: Annotated[float, typer.Option("--holdout", metavar="SHARE", callback=number_in(0, 0.9, above=True), help="Share of TRACE (by arrival) held out to measure the error when no --history is given.")] = 0.2,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write TRACE with its predicted_output_tokens (native CSV), for solve and simulate.")] = None,
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fit the output-length predictor (median per model and prompt-length bucket) and report its error.

    The error is the literature's: mean absolute error and the shares of predictions
    within 50 and 100 tokens, on requests the predictor was not fitted on.
    """
    with user_errors():
        if out_path is not None:
            check_output(out_path)
        loaded = read_trace(trace, format, arrival_rate, seed, model)
        requests = loaded.requests
        if history is None:
            fitted_on, judged = split_history(requests, holdout)
            label = f"first {1 - holdout:.0%} of {trace.name} ({len(fitted_on):,} requests)"
        else:
            fitted_on, judged = optimizer.load_trace(history, model=model).requests, requests
            label = f"{history.name} ({len(fitted_on):,} requests)"
        fitted = fit_predictor(fitted_on)
        known = judged[judged["output_tokens"].notna()]
        error = prediction_error(fitted.predict(known), known["output_tokens"].to_numpy(dtype=float)) if len(known) else None
        if out_path is not None:
            optimizer.write_trace(with_predictions(requests, fitted.predict(requests)), out_path)
    if quiet:
        return
    out.print(f"Predictor fitted on {label}: {len(fitted.medians)} (model, prompt-length bucket) medians, overall median {fitted.overall_median:,.0f} tokens")
    if error is not None:
        out.print(f"Error on {error['requests']:,} held-out requests: MAE {error['mae_tokens']:,.1f} tokens, "
                  f"{error['within_50']:.1%} within 50, {error['within_100']:.1%} within 100")
    if out_path is not None:
        out.print(f"Wrote {out_path} ({len(requests):,} requests with predicted_output_tokens)")
