"""Runtime messaging library: envelope, publishers, consumers, idempotency ledger, routing."""
