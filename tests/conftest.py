"""Shared test helpers: request tables and the solver backends available here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.backends import available_backends

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
