"""Plan LLM inference across a fleet of GPU replicas.

The public API, along the data's path::

    trace = load_trace("traces/sharegpt_batch_2k.csv")
    cluster = parse_replicas("h100-tp4:4,a100-tp4:4")
    result = solve(trace.requests, cluster, solver="lpt")
    validate_plan(result.plan, trace.requests, cluster)
    write_plan(result.plan, "plan.csv")
"""

from optimizer.cluster import DEFAULT_REPLICAS, Cluster, EngineLimits, Replica, load_cluster, parse_replicas, resolve_cluster
from optimizer.errors import ClusterError, InputError, OptimizerError, PlanError, ProfileError, TraceError
from optimizer.plan import PLAN_COLUMNS, plan_violations, read_plan, validate_plan, write_plan
from optimizer.solve import SOLVERS, Result, solve
from optimizer.trace import COLUMNS, FORMATS, Trace, load_trace, trace_stats, write_trace

__all__ = [
    "COLUMNS",
    "DEFAULT_REPLICAS",
    "FORMATS",
    "PLAN_COLUMNS",
    "SOLVERS",
    "Cluster",
    "EngineLimits",
    "ClusterError",
    "InputError",
    "OptimizerError",
    "PlanError",
    "ProfileError",
    "Replica",
    "Result",
    "Trace",
    "TraceError",
    "load_cluster",
    "load_trace",
    "parse_replicas",
    "plan_violations",
    "read_plan",
    "resolve_cluster",
    "solve",
    "trace_stats",
    "validate_plan",
    "write_plan",
    "write_trace",
]
