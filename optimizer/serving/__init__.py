"""Serving simulation: the iteration-level engine, batching and dispatch policies, the repairer, deviations, metrics."""
