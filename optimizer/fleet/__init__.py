"""Fleet and performance: clusters of replicas, iteration-time profiles, per-request estimates."""
