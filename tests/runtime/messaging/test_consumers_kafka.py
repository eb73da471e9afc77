from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from jobstream.contract.routing import Routing
from jobstream.messaging.consumers import JobProcessor, KafkaConsumer, Outcome, install_stop_signals
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import consumer_config, producer_config
from jobstream.messaging.ledger import SqliteLedger, result_digest
from jobstream.messaging.metrics import InMemoryMetrics
from jobstream.messaging.publishers import KafkaPublisher
from jobstream.messaging.routing import StaticRouting
from rehearsal.servers import TansuBroker
from tests.runtime.messaging.conftest import create_topics, fast_consumer_settings
from tests.runtime.messaging.test_routing import routing_for

pytestmark = pytest.mark.kafka


def double(envelope: Envelope) -> Mapping[str, Any]:
    return {"doubled": envelope.payload["n"] * 2}


class Rig:
    def __init__(self, broker: TansuBroker, tmp_path: Path, phase: int) -> None:
        self.topic = f"jobs-{uuid.uuid4().hex[:8]}"
        self.dlt = f"{self.topic}.dlq"
        self.group = f"ml-{uuid.uuid4().hex[:6]}"
        self.bootstrap = broker.bootstrap
        create_topics(broker.bootstrap, self.topic, self.dlt)
        self.routing: Routing = routing_for(
            phase, topic=self.topic, dead_letter_topic=self.dlt,
            bootstrap_brokers=broker.bootstrap, consumer_group=self.group, kafka_auth="none",
        )  # fmt: skip
        self.ledger = SqliteLedger(str(tmp_path / "ledger.db"))
        self.metrics = InMemoryMetrics()
        self.producer = Producer(producer_config(broker.bootstrap))
        self.consumer = KafkaConsumer(
            StaticRouting(self.routing),
            JobProcessor("kafka", double, self.ledger, self.metrics),
            lambda r: consumer_config(
                r.bootstrap_brokers, r.consumer_group, **fast_consumer_settings()
            ),
            self.producer,
            verify_wait=0.5,
        )
        self.publisher = KafkaPublisher(producer_config(broker.bootstrap))

    def poll_until(self, predicate: Any, timeout: float = 15) -> list[Outcome | None]:
        stop = threading.Event()
        outcomes: list[Outcome | None] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate(outcomes):
            outcomes.append(self.consumer.poll_once(stop))
        return outcomes

    def committed(self, topic: str | None = None) -> int:
        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            (tp,) = reader.committed([TopicPartition(topic or self.topic, 0)], timeout=10)
            return tp.offset
        finally:
            reader.close()

    def close(self) -> None:
        self.consumer._close()


@pytest.fixture
def rig_factory(kafka_broker: TansuBroker, tmp_path: Path) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(phase: int) -> Rig:
        rig = Rig(kafka_broker, tmp_path, phase)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def _job(job_id: str, routes: tuple[str, ...] = ("sqs", "kafka")) -> Envelope:
    return Envelope.new("double", {"n": 4}, job_id=job_id).with_routes(routes)


def test_primary_applies_the_job_then_commits_its_offset(rig_factory: Any) -> None:
    rig: Rig = rig_factory(4)
    rig.publisher.publish(rig.topic, _job("job-1", ("kafka",)))
    outcomes = rig.poll_until(lambda o: Outcome.APPLIED in o)
    assert Outcome.APPLIED in outcomes
    assert rig.ledger.digest_of("job-1") == result_digest({"doubled": 8})
    assert rig.committed() == 1


def test_poison_message_goes_to_the_dead_letter_topic_and_is_committed(rig_factory: Any) -> None:
    rig: Rig = rig_factory(4)
    rig.producer.produce(rig.topic, key=b"x", value=b"not json")
    rig.producer.flush(10)
    rig.poll_until(lambda _o: rig.metrics.total("DeadLettered", Consumer="kafka") >= 1)
    assert rig.metrics.total("DeadLettered", Consumer="kafka") == 1
    assert rig.committed() == 1


def test_verify_counts_a_match_when_the_sqs_side_applied_the_same_result(
    rig_factory: Any,
) -> None:
    rig: Rig = rig_factory(3)
    rig.ledger.apply("job-1", result_digest({"doubled": 8}), "sqs", {"doubled": 8})
    rig.publisher.publish(rig.topic, _job("job-1"))
    assert Outcome.MATCH in rig.poll_until(lambda o: Outcome.MATCH in o)
    assert rig.metrics.total("VerifyMatches") == 1
    assert rig.committed() == 1


def test_verify_counts_a_mismatch_when_the_applied_result_differs(rig_factory: Any) -> None:
    rig: Rig = rig_factory(3)
    rig.ledger.apply("job-1", result_digest({"doubled": 9}), "sqs", {"doubled": 9})
    rig.publisher.publish(rig.topic, _job("job-1"))
    assert Outcome.MISMATCH in rig.poll_until(lambda o: Outcome.MISMATCH in o)
    assert rig.metrics.total("VerifyMismatches") == 1


def test_verify_defers_a_job_nobody_has_applied_commits_and_moves_on(rig_factory: Any) -> None:
    rig: Rig = rig_factory(3)
    rig.publisher.publish(rig.topic, _job("job-1"))
    outcomes = rig.poll_until(lambda o: Outcome.DEFERRED in o)
    assert Outcome.DEFERRED in outcomes
    assert rig.committed() == 1, "a deferred verify must not hold the partition"
    assert rig.ledger.digest_of("job-1") is None, "verify mode applied a job SQS also carries"
    assert rig.metrics.total("VerifyDeferred") == 1


def test_verify_does_not_hold_the_partition_behind_an_unapplied_job(rig_factory: Any) -> None:
    """The old consumer sought back to an unapplied dual-routed job forever: the job behind it on
    the same partition was never read. The wait is bounded (verify_wait=0.5 s here)."""
    rig: Rig = rig_factory(3)
    rig.publisher.publish(rig.topic, _job("job-1"))
    rig.publisher.publish(rig.topic, _job("job-2", ("kafka",)))
    outcomes = rig.poll_until(lambda o: Outcome.APPLIED in o, timeout=10)
    assert Outcome.APPLIED in outcomes, f"job-2 never processed behind job-1: {outcomes}"
    assert rig.ledger.digest_of("job-2") is not None
    assert rig.committed() == 2


def test_verify_never_dead_letters_a_dual_routed_job_whose_handler_fails(rig_factory: Any) -> None:
    """The SQS path owns a job that also went to SQS: verify mode parks nothing of it."""
    rig: Rig = rig_factory(3)

    def broken(_envelope: Envelope) -> Mapping[str, Any]:
        raise RuntimeError("model not loaded")

    rig.consumer.processor.handler = broken
    rig.consumer.processor.handler_backoff = 0
    rig.publisher.publish(rig.topic, _job("job-1"))
    outcomes = rig.poll_until(lambda o: Outcome.LEFT_TO_SQS in o)
    assert Outcome.LEFT_TO_SQS in outcomes
    assert rig.metrics.total("DeadLettered") == 0, "verify mode dead-lettered a dual-routed job"
    assert rig.ledger.digest_of("job-1") is None
    assert rig.committed() == 1


def test_primary_dead_letters_a_job_whose_handler_fails_on_every_attempt(
    rig_factory: Any,
) -> None:
    rig: Rig = rig_factory(4)

    def broken(_envelope: Envelope) -> Mapping[str, Any]:
        raise RuntimeError("model not loaded")

    rig.consumer.processor.handler = broken
    rig.consumer.processor.handler_backoff = 0
    rig.publisher.publish(rig.topic, _job("job-1", ("kafka",)))
    rig.poll_until(lambda _o: rig.metrics.total("DeadLettered", Consumer="kafka") >= 1)
    assert rig.metrics.total("DeadLettered", Consumer="kafka") == 1
    assert rig.metrics.total("ProcessingErrors", Consumer="kafka") == 3
    assert rig.committed() == 1


def test_verify_applies_a_job_published_to_kafka_alone(rig_factory: Any) -> None:
    rig: Rig = rig_factory(3)
    rig.publisher.publish(rig.topic, _job("job-1", ("kafka",)))
    assert Outcome.APPLIED in rig.poll_until(lambda o: Outcome.APPLIED in o)
    assert rig.committed() == 1


def test_sigterm_stops_the_consumer_after_committing_the_current_job(rig_factory: Any) -> None:
    rig: Rig = rig_factory(4)
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_stop_signals(stop)
    try:
        rig.publisher.publish(rig.topic, _job("job-1", ("kafka",)))
        worker = threading.Thread(target=rig.consumer.run, args=(stop,))
        worker.start()
        deadline = time.monotonic() + 15
        while rig.ledger.digest_of("job-1") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        signal.raise_signal(signal.SIGTERM)
        worker.join(10)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert not worker.is_alive()
    assert rig.committed() == 1


class FailOnceLedger:
    """A ledger whose first apply fails as if the database connection dropped."""

    def __init__(self, inner: SqliteLedger) -> None:
        self.inner = inner
        self.failures = 0

    def apply(self, job_id: str, digest: str, consumer: str, result: Mapping[str, Any]) -> bool:
        if not self.failures:
            self.failures += 1
            raise ConnectionError("database connection lost")
        return self.inner.apply(job_id, digest, consumer, result)

    def digest_of(self, job_id: str) -> str | None:
        return self.inner.digest_of(job_id)

    def defer_verify(self, job_id: str, digest: str, consumer: str) -> None:
        self.inner.defer_verify(job_id, digest, consumer)

    def claim_verify(self, job_id: str) -> str | None:
        return self.inner.claim_verify(job_id)

    def applied_count(self) -> int:
        return self.inner.applied_count()

    def close(self) -> None:
        self.inner.close()


def test_database_failure_is_retried_from_the_committed_offset(rig_factory: Any) -> None:
    rig: Rig = rig_factory(4)
    flaky = FailOnceLedger(rig.ledger)
    rig.consumer.processor.ledger = flaky
    rig.publisher.publish(rig.topic, _job("job-1", ("kafka",)))
    stop = threading.Event()
    worker = threading.Thread(target=rig.consumer.run, args=(stop,))
    worker.start()
    deadline = time.monotonic() + 20
    while rig.ledger.digest_of("job-1") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(10)
    assert flaky.failures == 1
    assert (rig.ledger.applied_count(), rig.committed()) == (1, 1)
