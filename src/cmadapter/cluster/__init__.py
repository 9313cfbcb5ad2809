"""Scale-out on Ray: `prepare` and `index` as Ray Data pipelines over the same per-video functions as the local path."""
