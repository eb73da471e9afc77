"""``jobstream-worker``: the one command an ML image runs (Batch job mode or service mode)."""
