"""Planning: lower bounds, heuristics, the makespan MIP and its backends, plans and their validator."""
