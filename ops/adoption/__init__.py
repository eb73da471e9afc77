"""`jobstream adopt`'s parts: the result, reading the live resources, comparing with the plan."""
