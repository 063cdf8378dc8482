"""The request table: what every trace format is loaded into.

The normalized table has one row per request, in file order:

=========================  ============  ====================================================
column                     dtype         meaning
=========================  ============  ====================================================
request_id                 str           unique; from the file, else the 0-based row number
arrival_s                  float64       seconds since the first request (0 in offline batches)
prompt_tokens              int64         prompt (prefill) length, at least 1
output_tokens              Int64         generated tokens, at least 1; <NA> when unknown
predicted_output_tokens    Int64         prediction made before the request runs; <NA> if none
model                      str           model the request asks for; "" means any model
priority                   int64         lower is more urgent (vLLM's convention); default 0
ttft_target_s              float64       time-to-first-token target; NaN when none
tbt_target_s               float64       time-between-tokens target; NaN when none
e2e_target_s               float64       end-to-end latency target; NaN when none
hash_ids                   object        tuple of 512-token prefix block ids (only if the source has them)
prefix_group               str           declared prefix levels "a/b" ("" = none; only if declared)
prefix_tokens              object        tuple of tokens each level shares (only with prefix_group)

The full table is `COLUMNS`; `Trace` carries it with what loading noticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Columns of the normalized request table, in order (the prefix columns only when present;
#: `optimizer.traces.prefixes` reads them).
COLUMNS = (
    "request_id",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "predicted_output_tokens",
    "model",
    "priority",
    "ttft_target_s",
    "tbt_target_s",
    "e2e_target_s",
)
TARGET_COLUMNS = ("ttft_target_s", "tbt_target_s", "e2e_target_s")


@dataclass(frozen=True)
class Trace:
    """A loaded trace: the normalized request table and what loading it noticed."""

    requests: pd.DataFrame
    path: str
    format: str
    #: Source rows left out of `requests`, with columns ``line`` and ``reason``.
    excluded: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"line": pd.Series(dtype="int64"), "reason": pd.Series(dtype="str")})
    )
    #: Things the user should know about how the file was read (one sentence each).
    notes: tuple[str, ...] = ()

    @property
    def num_requests(self) -> int:
        return len(self.requests)

    @property
    def is_offline_batch(self) -> bool:
        """True when every request is available at time 0."""
        return bool((self.requests["arrival_s"] == 0).all())


# --------------------------------------------------------------------------------------
# Reading cells with located errors
