"""`bounds`: the lower bounds on a trace's makespan on a cluster."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

import optimizer
from commands.common import (
    PrefixTextOpt,
    SamplesOpt,
    SharedPrefixOpt,
    EngineOpt,
    FormatOpt,
    ModelOpt,
    ProfilesOpt,
    RateOpt,
    ReplicasOpt,
    SeedOpt,
    SourceOpt,
    TraceArg,
    out,
    read_profiles,
    read_trace,
    user_errors,
)

app = typer.Typer()


@app.command(epilog="Example: python cli.py bounds traces/AzureLLMInferenceTrace_conv.csv --replicas h100-tp4:2,a100-tp4:2")
def bounds(
    trace: TraceArg,
    replicas: ReplicasOpt = optimizer.DEFAULT_REPLICAS,
    engine: EngineOpt = "",
    source: SourceOpt = "auto",
    format: FormatOpt = None,
    arrival_rate: RateOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    shared_prefix_tokens: SharedPrefixOpt = None,
    samples_per_prompt: SamplesOpt = None,
    prefix_text: PrefixTextOpt = None,
    profiles: ProfilesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bounds as JSON.")] = False,
    no_prefix_cache: Annotated[bool, typer.Option("--no-prefix-cache", help="Bounds for replicas that reuse no prompt prefix (by default declared prefixes are reused).")] = False,
) -> None:
    """Print the lower bounds on the makespan of a trace on a cluster, and which one binds."""
    with user_errors():
        loaded = read_trace(trace, format, arrival_rate, seed, model, shared_prefix_tokens, samples_per_prompt, prefix_text)
        cluster = optimizer.resolve_cluster(replicas, engine=engine, source=source)
        found, estimates = optimizer.trace_bounds(loaded.requests, cluster, profiles=read_profiles(profiles), prefix_cache=not no_prefix_cache)
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
        return
    out.print(f"{loaded.path}: {loaded.num_requests:,} requests on {cluster.describe()}")
    table = Table("replica kind", "replicas", "KV capacity tokens", "best batch B*", "mean work s", "mean latency s")
    for k, kind in enumerate(estimates.kinds):
        replica = cluster.replicas[int(estimates.replicas_of_kind[k][0])]
        eligible = estimates.eligible[:, k]
        table.add_row(
            kind,
            str(len(estimates.replicas_of_kind[k])),
            f"{replica.kv_capacity_tokens:,}",
            f"{estimates.batch_size[k]:.0f}",
            f"{estimates.work_s[eligible, k].mean():.3f}" if eligible.any() else "-",
            f"{estimates.latency_s[eligible, k].mean():.2f}" if eligible.any() else "-",
        )
    out.print(table)
    bound_table = Table("lower bound", "seconds", "")
    for name, value in (("work", found.work_s), ("chain", found.chain_s), ("pcmax", found.pcmax_s)):
        bound_table.add_row(name, f"{value:,.2f}", "binds" if name == found.binding else "")
    out.print(bound_table)
