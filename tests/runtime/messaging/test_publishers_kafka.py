from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from confluent_kafka import Consumer

from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import auth_config, msk_iam_oauth_cb, producer_config
from jobstream.messaging.metrics import InMemoryMetrics
from jobstream.messaging.publishers import KafkaPublisher, PublishError
from rehearsal.servers import TansuBroker, use_dummy_aws_credentials
from tests.runtime.messaging.conftest import create_topics


def _read_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 15
) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append((msg.key() or b"", msg.value() or b""))
    finally:
        consumer.close()
    return out


@pytest.mark.kafka
def test_published_job_is_keyed_by_its_job_id(kafka_broker: TansuBroker, topic_name: str) -> None:
    create_topics(kafka_broker.bootstrap, topic_name, partitions=3)
    job = Envelope.new("embed", {"n": 1}, job_id="job-42").with_routes(["kafka"])
    publisher = KafkaPublisher(producer_config(kafka_broker.bootstrap))
    publisher.publish(topic_name, job)
    ((key, value),) = _read_all(kafka_broker.bootstrap, topic_name, 1)
    assert key == b"job-42"
    assert Envelope.from_json(value) == job


@pytest.mark.kafka
def test_batch_returns_after_every_delivery_is_confirmed(
    kafka_broker: TansuBroker, topic_name: str
) -> None:
    create_topics(kafka_broker.bootstrap, topic_name, partitions=3)
    metrics = InMemoryMetrics()
    publisher = KafkaPublisher(producer_config(kafka_broker.bootstrap), metrics=metrics)
    publisher.publish_batch(
        topic_name, [Envelope.new("embed", {}, job_id=f"j{i}") for i in range(50)]
    )
    assert metrics.total("JobsPublished", Route="kafka") == 50
    assert len(_read_all(kafka_broker.bootstrap, topic_name, 50)) == 50


def test_unreachable_broker_fails_the_publish_after_the_delivery_timeout() -> None:
    from rehearsal.servers import free_port

    config = producer_config(
        f"127.0.0.1:{free_port()}", delivery_timeout_ms=1000, extra={"log_level": 0}
    )
    metrics = InMemoryMetrics()
    with pytest.raises(PublishError, match="1 message"):
        KafkaPublisher(config, metrics=metrics).publish("t", Envelope.new("embed", {}))
    assert metrics.total("PublishErrors", Route="kafka") == 1


def test_producer_config_is_durable_and_idempotent() -> None:
    config = producer_config("b:9098")
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)


def test_iam_auth_uses_oauthbearer_over_tls() -> None:
    config = auth_config("iam", "eu-west-1")
    assert (config["security.protocol"], config["sasl.mechanisms"]) == ("SASL_SSL", "OAUTHBEARER")
    assert callable(config["oauth_cb"])


def test_msk_iam_callback_returns_a_signed_token_and_expiry_in_seconds() -> None:
    """Tansu does not accept OAUTHBEARER, so the MSK IAM path is tested on its own: the
    signer needs only credentials (dummy ones here) and makes no network call."""
    use_dummy_aws_credentials()
    token, expiry = msk_iam_oauth_cb("eu-west-1")("ignored sasl.oauthbearer.config")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert "X-Amz-Signature" in query
    assert time.time() < expiry < time.time() + 3600
