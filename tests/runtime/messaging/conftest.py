"""Helpers for the messaging tests over the session's local servers (tests/conftest.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from jobstream.messaging import aws
from jobstream.messaging.kafka import ensure_topics
from rehearsal.servers import MotoServer

REGION = "us-east-1"


@dataclass
class Aws:
    url: str

    def client(self, service: str, max_attempts: int = 2) -> Any:
        return aws.client(service, region=REGION, endpoint_url=self.url, max_attempts=max_attempts)


@pytest.fixture
def aws_local(moto_server: MotoServer) -> Aws:
    """moto's server with every service reset to empty for this test."""
    moto_server.reset()
    return Aws(moto_server.url)


@pytest.fixture
def topic_name() -> str:
    return f"jobs-{uuid.uuid4().hex[:8]}"


def create_topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    ensure_topics({"bootstrap.servers": bootstrap}, list(names), partitions=partitions)


def fast_consumer_settings() -> dict[str, Any]:
    """Tansu joins a group in about half of session.timeout.ms: keep it small in tests."""
    return {"session_timeout_ms": 2000, "heartbeat_ms": 500}


def make_queue(
    sqs: Any, name: str, *, max_receive: int = 2, visibility: int = 30
) -> tuple[str, str]:
    """A queue and its DLQ with a redrive policy; returns (queue url, dlq url)."""
    import json

    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url
