"""Shared test helpers: request tables and the solver backends available here."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from optimizer.planning.backends import available_backends

# The same examples on every run, so a CI failure can be reproduced; run with
# HYPOTHESIS_PROFILE=explore to draw new ones.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

BACKENDS = sorted(available_backends())


def make_requests(prompts, outputs, arrivals=None, models=None) -> pd.DataFrame:
    """A normalized request table with ids r0, r1, ... (arrivals 0 and any model by default)."""
    n = len(prompts)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "arrival_s": np.zeros(n) if arrivals is None else np.asarray(arrivals, dtype=float),
            "prompt_tokens": np.asarray(prompts, dtype=np.int64),
            "output_tokens": pd.array(outputs, dtype="Int64"),
            "predicted_output_tokens": pd.array([pd.NA] * n, dtype="Int64"),
            "model": list(models) if models is not None else [""] * n,
            "priority": np.zeros(n, dtype=np.int64),
        }
    )


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each solver backend available on this machine."""
    return request.param
