from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from messaging.consumers import JobProcessor, Outcome, SqsConsumer
from messaging.envelope import Envelope
from messaging.ledger import SqliteLedger
from messaging.metrics import InMemoryMetrics
from messaging.publishers import SqsPublisher
from messaging.routing import StaticRouting
from tests.messaging.conftest import Aws, make_queue
from tests.messaging.test_routing import routing_for

pytestmark = pytest.mark.moto_server


def double(envelope: Envelope) -> Mapping[str, Any]:
    return {"doubled": envelope.payload["n"] * 2}


def _setup(
    aws_local: Aws, tmp_path: Path, *, phase: int = 1, visibility: int = 30, handler: Any = double
) -> tuple[Any, str, str, SqsConsumer, SqliteLedger, InMemoryMetrics]:
    sqs = aws_local.client("sqs")
    url, dlq = make_queue(sqs, "jobs", visibility=visibility)
    ledger = SqliteLedger(str(tmp_path / "ledger.db"))
    metrics = InMemoryMetrics()
    routing = StaticRouting(routing_for(phase, queue_url=url))
    consumer = SqsConsumer(
        sqs, routing, JobProcessor("sqs", handler, ledger, metrics), wait_seconds=1
    )
    return sqs, url, dlq, consumer, ledger, metrics


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _job(job_id: str = "job-1", n: int = 21) -> Envelope:
    return Envelope.new("double", {"n": n}, job_id=job_id).with_routes(["sqs"])


def test_job_is_applied_and_its_message_deleted(aws_local: Aws, tmp_path: Path) -> None:
    sqs, url, _, consumer, ledger, _ = _setup(aws_local, tmp_path)
    SqsPublisher(sqs).publish(url, _job())
    assert consumer.poll_once(threading.Event()) == 1
    assert ledger.digest_of("job-1") is not None
    assert _depth(sqs, url) == 0


def test_redelivered_job_is_skipped_by_the_ledger_and_deleted(
    aws_local: Aws, tmp_path: Path
) -> None:
    sqs, url, _, consumer, ledger, metrics = _setup(aws_local, tmp_path)
    SqsPublisher(sqs).publish_batch(url, [_job(), _job()])
    consumer.poll_once(threading.Event())
    assert (ledger.applied_count(), metrics.total("DuplicatesSkipped", Consumer="sqs")) == (1, 1)
    assert _depth(sqs, url) == 0


def test_poison_message_is_moved_to_the_dlq_by_the_redrive_policy(
    aws_local: Aws, tmp_path: Path
) -> None:
    sqs, url, dlq, consumer, _, metrics = _setup(aws_local, tmp_path)
    sqs.send_message(QueueUrl=url, MessageBody='{"schema_version": 99}')
    stop = threading.Event()
    for _ in range(3):  # maxReceiveCount is 2: the third receive redrives it
        consumer.poll_once(stop)
    assert _depth(sqs, url) == 0
    assert _depth(sqs, dlq) == 1
    assert metrics.total("DeadLettered", Consumer="sqs") == 1


def test_failing_handler_leaves_the_message_for_a_retry(aws_local: Aws, tmp_path: Path) -> None:
    def broken(envelope: Envelope) -> Mapping[str, Any]:
        raise RuntimeError("model not loaded")

    sqs, url, _, consumer, ledger, metrics = _setup(aws_local, tmp_path, handler=broken)
    SqsPublisher(sqs).publish(url, _job())
    consumer.poll_once(threading.Event())
    assert (_depth(sqs, url), ledger.applied_count()) == (1, 0)
    assert metrics.total("ProcessingErrors", Consumer="sqs") == 1


def test_visibility_is_extended_while_a_long_job_runs(aws_local: Aws, tmp_path: Path) -> None:
    def slow(envelope: Envelope) -> Mapping[str, Any]:
        time.sleep(3.5)
        return {"ok": True}

    sqs, url, _, consumer, _, _ = _setup(aws_local, tmp_path, visibility=2, handler=slow)
    SqsPublisher(sqs).publish(url, _job())
    worker = threading.Thread(target=consumer.poll_once, args=(threading.Event(),))
    worker.start()
    time.sleep(2.8)  # past the 2 s visibility timeout, while the job still runs
    stolen = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
    worker.join()
    assert stolen == []


def test_consumer_in_off_mode_does_not_receive(aws_local: Aws, tmp_path: Path) -> None:
    sqs = aws_local.client("sqs")
    url, _ = make_queue(sqs, "jobs")
    SqsPublisher(sqs).publish(url, _job())
    routing = StaticRouting(routing_for(4, queue_url=url))
    processor = JobProcessor("sqs", double, SqliteLedger(str(tmp_path / "l.db")))
    consumer = SqsConsumer(sqs, routing, processor, idle_sleep=0.01)
    assert consumer.poll_once(threading.Event()) == 0
    assert _depth(sqs, url) == 1


def test_verify_mode_keeps_an_unapplied_job_in_the_queue(aws_local: Aws, tmp_path: Path) -> None:
    sqs = aws_local.client("sqs")
    url, _ = make_queue(sqs, "jobs")
    processor = JobProcessor("sqs", double, SqliteLedger(str(tmp_path / "l.db")))
    routing = StaticRouting(
        routing_for(3, queue_url=url, consumer_modes={"sqs": "verify", "kafka": "primary"})
    )
    consumer = SqsConsumer(sqs, routing, processor, wait_seconds=1)
    message = {
        "ReceiptHandle": "unused",
        "Body": _job().with_routes(["sqs", "kafka"]).to_json(),
    }
    SqsPublisher(sqs).publish(url, _job())
    received = sqs.receive_message(QueueUrl=url)["Messages"][0]
    message["ReceiptHandle"] = received["ReceiptHandle"]
    assert consumer.handle(url, message, "verify") is Outcome.PENDING
    assert _depth(sqs, url) == 1


def test_database_failure_leaves_the_message_for_redelivery(aws_local: Aws, tmp_path: Path) -> None:
    sqs, url, _, consumer, ledger, _ = _setup(aws_local, tmp_path, visibility=1)
    real_apply = ledger.apply
    failures: list[str] = []

    def apply_failing_once(*args: Any) -> bool:
        if not failures:
            failures.append("database connection lost")
            raise ConnectionError(failures[0])
        return real_apply(*args)

    ledger.apply = apply_failing_once  # type: ignore[method-assign]
    SqsPublisher(sqs).publish(url, _job())
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    deadline = time.monotonic() + 10
    while ledger.digest_of("job-1") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(10)
    assert (len(failures), ledger.applied_count()) == (1, 1)
    assert _depth(sqs, url) == 0
