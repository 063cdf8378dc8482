"""Shared test helpers: request tables and the solver backends available here."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from optimizer import simulate, solve
from optimizer.fleet.cluster import Cluster, EngineLimits, Replica
from optimizer.planning.backends import available_backends
from optimizer.serving.deviation import Deviations, Failure, Slowdown

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


#: Engine limits leaving about 6k tokens of KV cache on an H100 TP2 replica: enough to force
#: preemptions (and prefix-cache evictions) on small random traces.
SMALL_KV = EngineLimits(gpu_memory_utilization=0.84, max_num_seqs=8)


def small_kv(count: int = 1) -> Cluster:
    """`count` llama2-70b replicas on 2 H100s each, with the SMALL_KV limits."""
    return Cluster(tuple(Replica(f"s{i}", "h100-80gb", 2, "llama2-70b", SMALL_KV) for i in range(count)))


def assert_engines_agree(requests: pd.DataFrame, cluster: Cluster, policy: str, dispatch: str, deviate: bool) -> None:
    """Simulate with the lockstep and the reference engine (LPT plan for plan-following rules;
    with `deviate`, jitter, a slowdown and a failure) and assert the results are equal bit for bit."""
    plan = solve(requests, cluster, solver="lpt").plan if dispatch in ("plan", "repair") else None
    deviations = None
    if deviate:
        deviations = Deviations(arrival_jitter_s=0.2, slowdowns=(Slowdown(cluster.names[0], 1.0, 2.0),),
                                failures=(Failure(cluster.names[-1], 3.0),), seed=1)
    runs = [simulate(requests, cluster, policy=policy, dispatch=dispatch, plan=plan, seed=2, deviations=deviations, reference=reference)
            for reference in (False, True)]
    pd.testing.assert_frame_equal(runs[0].requests, runs[1].requests, check_exact=True)
    pd.testing.assert_frame_equal(runs[0].replicas, runs[1].replicas, check_exact=True)
    assert (runs[0].moved_requests, runs[0].restarted_requests, runs[0].redone_tokens) == \
        (runs[1].moved_requests, runs[1].restarted_requests, runs[1].redone_tokens)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each solver backend available on this machine."""
    return request.param
