from __future__ import annotations

import json

import pytest

from jobstream.messaging.envelope import (
    Envelope,
    MalformedEnvelopeError,
    UnknownSchemaVersionError,
)


def _doc(**overrides: object) -> str:
    doc = Envelope.new("embed", {"text": "hi"}, job_id="job-1").with_routes(["sqs"]).to_dict()
    doc.update(overrides)
    return json.dumps(doc)


def test_envelope_round_trips_through_json() -> None:
    envelope = Envelope.new("embed", {"text": "hi", "n": 3}, job_id="job-1").with_routes(
        ["sqs", "kafka"]
    )
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_new_envelope_gets_a_job_id_when_none_is_given() -> None:
    assert Envelope.new("embed", {}).job_id != Envelope.new("embed", {}).job_id


def test_unknown_schema_version_is_rejected() -> None:
    with pytest.raises(UnknownSchemaVersionError, match="schema_version 2"):
        Envelope.from_json(_doc(schema_version=2))


def test_body_that_is_not_json_is_rejected_as_malformed() -> None:
    with pytest.raises(MalformedEnvelopeError, match="not JSON"):
        Envelope.from_json(b"\x00garbage")


def test_missing_field_is_rejected_as_malformed() -> None:
    doc = json.loads(_doc())
    del doc["job_id"]
    with pytest.raises(MalformedEnvelopeError, match="job_id"):
        Envelope.from_json(json.dumps(doc))


def test_unknown_route_in_body_is_rejected_as_malformed() -> None:
    with pytest.raises(MalformedEnvelopeError, match="routes"):
        Envelope.from_json(_doc(routes=["sns"]))


def test_publish_time_without_time_zone_is_rejected() -> None:
    with pytest.raises(MalformedEnvelopeError, match="time zone"):
        Envelope.from_json(_doc(published_at="2026-11-26T10:00:00"))


def test_stamping_unknown_route_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown routes"):
        Envelope.new("embed", {}).with_routes(["sns"])
