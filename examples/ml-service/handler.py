"""The example ML service's handler: what a team writes, and all it writes.

``jobstream-worker`` calls ``score(envelope)`` for each job (``JOBSTREAM_HANDLER=handler:score``)
and applies the returned mapping through the idempotency ledger: the handler computes, it never
writes. It must be deterministic for the same envelope, because verify mode compares the digest
of its result on the Kafka path with the one the SQS path applied.

This one "embeds" a text into a small, deterministic feature vector; a real service loads its
model once at import time and runs it here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from jobstream.messaging.envelope import Envelope

DIMENSIONS = 8
MODEL_VERSION = "example-hash-embedding-1"


class BadJobError(ValueError):
    """The job cannot be scored (the worker retries in-process, then the job is parked)."""


def score(envelope: Envelope) -> Mapping[str, Any]:
    text = envelope.payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadJobError(f"job {envelope.job_id}: payload.text must be a non-empty string")
    vector = [0.0] * DIMENSIONS
    for token in text.lower().split():
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        vector[digest[0] % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return {
        "model": MODEL_VERSION,
        "tokens": len(text.split()),
        "embedding": [round(v / norm, 6) for v in vector],
    }
