"""Plan LLM inference across a fleet of GPU replicas.

The public API, along the data's path::

    trace = load_trace("traces/sharegpt_batch_2k.csv")
    cluster = resolve_cluster("h100-tp4:4,a100-tp4:4")
    result = solve(trace.requests, cluster, solver="lpt")
    validate_plan(result.plan, trace.requests, cluster)
    write_plan(result.plan, "plan.csv")
"""

from optimizer.common.errors import (
    ClusterError,
    InputError,
    OptimizerError,
    PlanError,
    ProfileError,
    TraceError,
)
from optimizer.fleet.cluster import (
    DEFAULT_REPLICAS,
    Cluster,
    EngineLimits,
    Replica,
    load_cluster,
    parse_replicas,
    resolve_cluster,
)
from optimizer.fleet.estimates import Estimates, estimate
from optimizer.fleet.gpus import GPU_ALIASES, GPUS
from optimizer.fleet.measurements import (
    builtin_profiles,
    fit_profiles,
    read_measurements,
)
from optimizer.fleet.models import catalog_names, find_model
from optimizer.fleet.profile import Profile
from optimizer.planning.bounds import Bounds, lower_bounds, trace_bounds
from optimizer.planning.plan import (
    PLAN_COLUMNS,
    plan_violations,
    read_plan,
    validate_plan,
    write_plan,
)
from optimizer.planning.solve import HEURISTICS, Result, solve, solvers
from optimizer.serving.metrics import summary
from optimizer.serving.results import Simulation, write_simulation
from optimizer.serving.simulator import simulate
from optimizer.traces.formats import FORMATS
from optimizer.traces.load import load_trace
from optimizer.traces.stats import trace_stats
from optimizer.traces.table import COLUMNS, Trace
from optimizer.traces.write import write_trace

__all__ = [
    "COLUMNS",
    "DEFAULT_REPLICAS",
    "FORMATS",
    "GPUS",
    "GPU_ALIASES",
    "PLAN_COLUMNS",
    "HEURISTICS",
    "Bounds",
    "Cluster",
    "ClusterError",
    "EngineLimits",
    "Estimates",
    "InputError",
    "OptimizerError",
    "PlanError",
    "Profile",
    "ProfileError",
    "Replica",
    "Result",
    "Simulation",
    "Trace",
    "TraceError",
    "builtin_profiles",
    "estimate",
    "catalog_names",
    "find_model",
    "fit_profiles",
    "load_cluster",
    "load_trace",
    "lower_bounds",
    "parse_replicas",
    "plan_violations",
    "read_measurements",
    "read_plan",
    "resolve_cluster",
    "solve",
    "solvers",
    "simulate",
    "summary",
    "trace_bounds",
    "trace_stats",
    "validate_plan",
    "write_plan",
    "write_simulation",
    "write_trace",
]
