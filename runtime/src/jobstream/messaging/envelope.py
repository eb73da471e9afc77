"""The message envelope: what every job looks like on SQS and on Kafka.

JSON on the wire::

    {"schema_version": 1, "job_id": "...", "type": "...", "payload": {...},
     "routes": ["sqs", "kafka"], "published_at": "2026-11-26T17:00:00.000000+00:00"}

The job id is stable (chosen by the producer) and is the Kafka key and the SQS message
attribute ``job_id``; it is what the idempotency ledger records.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({SCHEMA_VERSION})
KNOWN_ROUTES: frozenset[str] = frozenset({"sqs", "kafka"})

_FIELDS = ("schema_version", "job_id", "type", "payload", "routes", "published_at")


class EnvelopeError(ValueError):
    """A message body that is not a valid envelope; such a message goes to the dead-letter path."""


class MalformedEnvelopeError(EnvelopeError):
    """The body is not JSON, or a field is missing or of the wrong type."""


class UnknownSchemaVersionError(EnvelopeError):
    """The body declares a schema version this library does not understand."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Envelope:
    job_id: str
    type: str
    payload: Mapping[str, Any]
    routes: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    published_at: datetime = field(default_factory=_now)

    @classmethod
    def new(
        cls, job_type: str, payload: Mapping[str, Any], *, job_id: str | None = None
    ) -> Envelope:
        """A new envelope; the job id defaults to a random UUID (pass your own stable id)."""
        return cls(job_id=job_id or str(uuid.uuid4()), type=job_type, payload=dict(payload))

    def with_routes(self, routes: Sequence[str]) -> Envelope:
        """A copy stamped with the routes it is being published to, and a fresh publish time."""
        unknown = set(routes) - KNOWN_ROUTES
        if unknown:
            raise ValueError(f"unknown routes {sorted(unknown)}; known: {sorted(KNOWN_ROUTES)}")
        return replace(self, routes=tuple(routes), published_at=_now())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "job_id": self.job_id,
            "type": self.type,
            "payload": dict(self.payload),
            "routes": list(self.routes),
            "published_at": self.published_at.isoformat(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    def to_bytes(self) -> bytes:
        return self.to_json().encode("utf-8")

    @classmethod
    def from_json(cls, body: str | bytes) -> Envelope:
        """Parse and validate a body; raises ``MalformedEnvelopeError`` or ``UnknownSchemaVersionError``."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEnvelopeError(f"message body is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise MalformedEnvelopeError("message body must be a JSON object")
        version = doc.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MalformedEnvelopeError("schema_version is missing or not an integer")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise UnknownSchemaVersionError(
                f"schema_version {version} is not supported (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
            )
        missing = [name for name in _FIELDS if name not in doc]
        if missing:
            raise MalformedEnvelopeError(f"envelope lacks fields: {', '.join(missing)}")
        job_id, job_type, payload = doc["job_id"], doc["type"], doc["payload"]
        routes, published_at = doc["routes"], doc["published_at"]
        if not isinstance(job_id, str) or not job_id:
            raise MalformedEnvelopeError("job_id must be a non-empty string")
        if not isinstance(job_type, str) or not job_type:
            raise MalformedEnvelopeError("type must be a non-empty string")
        if not isinstance(payload, dict):
            raise MalformedEnvelopeError("payload must be a JSON object")
        if not isinstance(routes, list) or not all(r in KNOWN_ROUTES for r in routes):
            raise MalformedEnvelopeError(f"routes must be a list drawn from {sorted(KNOWN_ROUTES)}")
        if not isinstance(published_at, str):
            raise MalformedEnvelopeError("published_at must be an ISO 8601 string")
        try:
            when = datetime.fromisoformat(published_at)
        except ValueError as exc:
            raise MalformedEnvelopeError(f"published_at is not ISO 8601: {exc}") from exc
        if when.tzinfo is None:
            raise MalformedEnvelopeError("published_at must carry a time zone")
        return cls(
            job_id=job_id,
            type=job_type,
            payload=payload,
            routes=tuple(str(r) for r in routes),
            schema_version=version,
            published_at=when,
        )
