"""JobProcessor and the SQS job consumer (one message, one Batch job), against a SQLite ledger."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from jobstream.messaging.consumers import JobProcessor, Outcome, ProcessingError, SqsJobConsumer
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.ledger import SqliteLedger, result_digest
from jobstream.messaging.metrics import InMemoryMetrics
from jobstream.messaging.routing import StaticRouting
from tests.runtime.messaging.test_routing import routing_for


def double(envelope: Envelope) -> Mapping[str, Any]:
    return {"doubled": envelope.payload["n"] * 2}


def _job(job_id: str = "job-1", routes: tuple[str, ...] = ("sqs", "kafka")) -> Envelope:
    return Envelope.new("double", {"n": 4}, job_id=job_id).with_routes(routes)


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    return SqliteLedger(str(tmp_path / "ledger.db"))


def test_applying_a_job_compares_the_digest_verify_mode_deferred(ledger: SqliteLedger) -> None:
    """The Kafka consumer deferred its digest (SQS was slower); the SQS side counts the parity."""
    metrics = InMemoryMetrics()
    verifier = JobProcessor("kafka", double, ledger, metrics)
    assert verifier.defer(_job(), result_digest({"doubled": 8})) is Outcome.DEFERRED
    sqs = JobProcessor("sqs", double, ledger, metrics)
    assert sqs.apply(_job()) is Outcome.APPLIED
    assert (metrics.total("VerifyMatches"), metrics.total("VerifyMismatches")) == (1, 0)


def test_a_deferred_digest_that_differs_counts_a_mismatch(ledger: SqliteLedger) -> None:
    metrics = InMemoryMetrics()
    JobProcessor("kafka", double, ledger, metrics).defer(_job(), result_digest({"doubled": 9}))
    JobProcessor("sqs", double, ledger, metrics).apply(_job())
    assert (metrics.total("VerifyMatches"), metrics.total("VerifyMismatches")) == (0, 1)


def test_deferring_after_the_job_was_applied_compares_at_once_and_only_once(
    ledger: SqliteLedger,
) -> None:
    metrics = InMemoryMetrics()
    JobProcessor("sqs", double, ledger, metrics).apply(_job())
    verifier = JobProcessor("kafka", double, ledger, metrics)
    assert verifier.defer(_job(), result_digest({"doubled": 8})) is Outcome.MATCH
    assert verifier.defer(_job(), result_digest({"doubled": 8})) is Outcome.DEFERRED
    assert metrics.total("VerifyMatches") == 1


def test_an_intermittent_handler_failure_is_absorbed_by_the_attempts(ledger: SqliteLedger) -> None:
    calls: list[int] = []

    def flaky(envelope: Envelope) -> Mapping[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("GPU busy")
        return double(envelope)

    metrics = InMemoryMetrics()
    processor = JobProcessor("sqs", flaky, ledger, metrics, handler_backoff=0)
    assert processor.apply(_job()) is Outcome.APPLIED
    assert metrics.total("ProcessingErrors", Consumer="sqs") == 2


def test_a_handler_failing_on_every_attempt_raises_processing_error(ledger: SqliteLedger) -> None:
    def broken(_envelope: Envelope) -> Mapping[str, Any]:
        raise ValueError("bad input")

    processor = JobProcessor("sqs", broken, ledger, handler_attempts=2, handler_backoff=0)
    with pytest.raises(ProcessingError, match="bad input"):
        processor.apply(_job())
    assert ledger.digest_of("job-1") is None


@pytest.mark.parametrize("phase_number", [1, 2, 3, 4])
def test_the_sqs_job_is_applied_in_every_phase_that_has_the_sqs_path(
    ledger: SqliteLedger, phase_number: int
) -> None:
    """Phases 1-3: primary; phase 4: drain. The pipe has deleted the message: apply it."""
    consumer = SqsJobConsumer(
        StaticRouting(routing_for(phase_number)), JobProcessor("sqs", double, ledger)
    )
    assert consumer.process(_job()) is Outcome.APPLIED
    assert ledger.digest_of("job-1") == result_digest({"doubled": 8})


def test_a_job_reaching_sqs_when_its_consumer_is_off_is_still_applied(
    ledger: SqliteLedger, caplog: pytest.LogCaptureFixture
) -> None:
    routing = routing_for(5, queue_url="https://sqs.example/q")
    consumer = SqsJobConsumer(StaticRouting(routing), JobProcessor("sqs", double, ledger))
    with caplog.at_level(logging.WARNING):
        assert consumer.process(_job()) is Outcome.APPLIED
    assert "consumer is off" in caplog.text


def test_a_redelivered_sqs_job_is_a_duplicate(ledger: SqliteLedger) -> None:
    consumer = SqsJobConsumer(StaticRouting(routing_for(1)), JobProcessor("sqs", double, ledger))
    consumer.process(_job())
    assert consumer.process(_job()) is Outcome.DUPLICATE
    assert ledger.applied_count() == 1
