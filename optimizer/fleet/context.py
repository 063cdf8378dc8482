"""Requests against the model's context window, and prompts against the range a profile knows.

A request needs prompt + output tokens of context (the output where known, else its
prediction). It fits a cluster when some replica serving its model has a context window
at least that long: the model's max_position_embeddings (`ModelShape.context_tokens`), or,
for a replica whose times are measurements of a deployment, the longest prompt that
deployment ran if longer (Splitwise ran llama2-70b, trained on 4,096 tokens, on 8,192-token
prompts: the deployment the default fleet's times describe held them).
What happens to the others is the caller's choice, never silent:

- "error" (the default): one error naming the first, how many, and the window;
- "drop": they are left out, and the note lists their ids;
- "truncate": the prompt keeps its last window - output tokens (as chat front-ends cut the
  oldest turns); an output longer than the window alone keeps window - 1 tokens after a
  1-token prompt. The note says how many were cut.

Profile range: the closed forms are fitted on prompts up to a largest length (Splitwise's
measurements: 8,192 tokens; the kernel tables' grid: 32,768; a roofline follows the kernel
tables it was fitted on). Longer prompts are extrapolated; `out_of_range` counts them and
says how far they go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.common.errors import OptimizerError
from optimizer.common.words import counted
from optimizer.fleet.cluster import Cluster
from optimizer.fleet.kernels import PREFILL_LENGTHS
from optimizer.fleet.models import find_model
from optimizer.fleet.sources import profile_for

POLICIES = ("error", "drop", "truncate")
#: Longest prompt of Splitwise's perf_model.csv (every configuration), bundled as the
#: `measured` source.
MEASURED_PROMPT_TOKENS = 8192
#: Ids listed in a note before "and N more".
LISTED_IDS = 50


@dataclass(frozen=True)
class Fitted:
    """The trace after the context check, and what was done, one note a line."""

    requests: pd.DataFrame
    notes: tuple[str, ...]


def windows(requests: pd.DataFrame, cluster: Cluster, profiles=None) -> np.ndarray:
    """Each request's largest context window over the replicas serving its model (0 when
    no window is known)."""
    by_model: dict[str, int] = {}
    for replica in cluster.first_of_each_kind:
        window = int(find_model(replica.model).context_tokens or 0)
        if window and profile_for(replica, profiles).source.startswith("measured"):
            window = max(window, MEASURED_PROMPT_TOKENS)
        by_model[replica.model] = max(by_model.get(replica.model, 0), window)
    largest = max(by_model.values(), default=0)
    models = requests["model"].fillna("").astype(str).to_numpy(dtype=object)
    return np.array([largest if m == "" else by_model.get(m, 0) for m in models], dtype=np.int64)


def fit_context(requests: pd.DataFrame, cluster: Cluster, policy: str = "error", where: str = "", profiles=None) -> Fitted:
    """Apply `policy` (module docstring) to the requests longer than their context window."""
    if policy not in POLICIES:
        raise OptimizerError(f"Unknown context policy {policy!r}; choose one of: {', '.join(POLICIES)}.")
    window = windows(requests, cluster, profiles)
    prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64)
    output_column = requests["output_tokens"].fillna(requests["predicted_output_tokens"]).fillna(0)
    output = output_column.to_numpy(dtype=np.int64)
    over = (window > 0) & (prompt + output > window)
    if not over.any():
        return Fitted(requests, ())
    first = int(np.argmax(over))
    ids = requests["request_id"].astype(str).to_numpy()
    count = int(over.sum())
    model = requests["model"].iloc[first] or cluster.models[0]
    if policy == "error":
        raise OptimizerError(
            f"{where + ': ' if where else ''}{counted(count, 'request')} need{'s' if count == 1 else ''} more context than the model holds (first {ids[first]!r}: "
            f"{prompt[first]:,} prompt + {output[first]:,} output tokens; {model} holds {window[first]:,}); "
            f"give --context drop to leave them out or --context truncate to cut their prompts."
        )
    if policy == "drop":
        listed = ", ".join(ids[over][:LISTED_IDS]) + (f" and {count - LISTED_IDS:,} more" if count > LISTED_IDS else "")
        kept = requests.loc[~over].reset_index(drop=True)
        return Fitted(kept, (f"Dropped {counted(count, 'request')} longer than the context window: {listed}.",))
    table = requests.copy()
    cut_output = np.minimum(output, window - 1)
    cut_prompt = np.maximum(window - cut_output, 1)
    table.loc[over, "prompt_tokens"] = cut_prompt[over]
    for column in ("output_tokens", "predicted_output_tokens"):
        known = table[column].notna().to_numpy()
        table.loc[over & known, column] = np.minimum(table.loc[over & known, column].to_numpy(dtype=np.int64), window[over & known] - 1)
    cut = int((prompt[over] - cut_prompt[over]).sum())
    return Fitted(table, (f"Truncated {counted(count, 'request')} to the context window: {cut:,} prompt tokens cut (oldest first).",))


def fitted_prompt_tokens(source: str) -> int:
    """The longest prompt a profile's source was measured or fitted on (0 when unknown)."""
    if source.startswith("measured"):
        return MEASURED_PROMPT_TOKENS
    if source.startswith(("kernels", "roofline")):
        return max(PREFILL_LENGTHS)
    return 0


def out_of_range(requests: pd.DataFrame, profiles_by_kind: dict[str, object]) -> list[str]:
    """One note per replica kind whose profile is extrapolated for some prompts: how many, how far."""
    prompt = requests["prompt_tokens"].to_numpy(dtype=np.int64)
    notes = []
    for kind, profile in profiles_by_kind.items():
        limit = fitted_prompt_tokens(profile.source)
        beyond = prompt > limit if limit else np.zeros(len(prompt), dtype=bool)
        if beyond.any():
            notes.append(f"{counted(int(beyond.sum()), 'prompt')} longer than the {limit:,} tokens {kind}'s profile was fitted on "
                         f"(up to {int(prompt.max()):,}, {prompt.max() / limit:.1f}x): their prefill times are extrapolated.")
    return notes
