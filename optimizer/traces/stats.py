"""Summary figures of a loaded trace.
"""

from __future__ import annotations

import numpy as np

from optimizer.traces.prefixes import has_prefixes, reuse_summary
from optimizer.traces.table import Trace


def trace_stats(trace: Trace) -> dict[str, object]:
    """Summary figures of a trace: counts, arrival rate and token-length percentiles, and
    with prefix information, the share of prompt tokens an unbounded cache could serve."""
    requests = trace.requests
    duration_s = float(requests["arrival_s"].max() - requests["arrival_s"].min())

    def lengths(column: str) -> dict[str, float] | None:
        known = requests[column].dropna().to_numpy(dtype=float)
        if not len(known):
            return None
        p50, p90, p99 = np.percentile(known, [50, 90, 99])
        return {
            "known": int(len(known)),
            "mean": round(float(known.mean()), 1),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(known.max()),
            "total": int(known.sum()),
        }

    figures = {
        "file": trace.path,
        "format": trace.format,
        "num_requests": trace.num_requests,
        "num_excluded": int(len(trace.excluded)),
        "offline_batch": trace.is_offline_batch,
        "duration_s": round(duration_s, 3),
        "rate_per_s": round(trace.num_requests / duration_s, 3) if duration_s > 0 else None,
        "models": {name or "(any)": int(count) for name, count in requests["model"].value_counts(sort=False).sort_index().items()},
        "prompt_tokens": lengths("prompt_tokens"),
        "output_tokens": lengths("output_tokens"),
        "predicted_output_tokens": lengths("predicted_output_tokens"),
        "notes": list(trace.notes),
    }
    if has_prefixes(requests):  # only then, so other traces' figures are as before
        figures["prefixes"] = reuse_summary(requests)
    return figures
