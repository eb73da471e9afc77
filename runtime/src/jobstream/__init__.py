"""jobstream: the service runtime of the jobstream ML job platform.

- ``jobstream.contract``: the phase table, the routing document, names, environment variables
  and exit statuses shared with the infrastructure (standard library only);
- ``jobstream.messaging``: envelope, publishers, consumers, idempotency ledger, routing reader,
  metrics;
- ``jobstream.worker``: ``jobstream-worker``, the one command an ML image runs.
"""

__version__ = "0.2.0"
