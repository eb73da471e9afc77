"""Consumers: SQS and Kafka, both calling the same job handler through ``JobProcessor``.

The mode comes from the routing parameter (re-read on every poll, cached by the reader):

- ``primary``: compute the result and apply it through the idempotency ledger (a job the
  ledger already holds is skipped: ``DuplicatesSkipped``);
- ``verify``: compute the result without applying it and compare its digest with the one
  the primary consumer applied (``VerifyMatches`` / ``VerifyMismatches``). A message is
  acknowledged (Kafka offset committed, SQS message deleted) only once the job has been
  applied by some consumer; until then the consumer waits with bounded backoff and then
  leaves the message where it is (Kafka: seek back; SQS: visible again later). A job whose
  envelope routes name only this consumer's route (published to it alone) is applied;
- ``off``: the consumer does not read.

Poison messages (``EnvelopeError``: malformed body, unknown schema version):
SQS leaves them undeleted and visible again at once, so the queue's redrive policy moves
them to the DLQ after ``maxReceiveCount`` receives (counted as ``DeadLettered`` on the last
receive); Kafka produces them to the dead-letter topic (with the reason in headers) and
then commits. A handler that keeps failing is treated the same way (SQS: redrive after
``maxReceiveCount``; Kafka: dead-lettered after ``handler_attempts``).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from messaging import metrics as m
from messaging.envelope import Envelope, EnvelopeError
from messaging.ledger import Ledger, result_digest
from messaging.publishers import NULL_METRICS, RoutingSource

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, Producer
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

JobHandler = Callable[[Envelope], Mapping[str, Any]]


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    MATCH = "match"
    MISMATCH = "mismatch"
    PENDING = "pending"
    """Verify mode: the job has not been applied by any consumer yet."""


class ProcessingError(Exception):
    """The job handler failed for this message."""


@dataclass
class JobProcessor:
    """Runs the handler and talks to the ledger, for one consumer (``sqs`` or ``kafka``)."""

    consumer: str
    handler: JobHandler
    ledger: Ledger
    metrics: m.MetricsSink = NULL_METRICS

    def compute(self, envelope: Envelope) -> Mapping[str, Any]:
        start = time.perf_counter()
        try:
            result = self.handler(envelope)
        except Exception as exc:
            self.metrics.count(m.PROCESSING_ERRORS, Consumer=self.consumer)
            raise ProcessingError(f"job {envelope.job_id}: handler failed: {exc!r}") from exc
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.metrics.timing(m.PROCESSING_TIME, elapsed, Consumer=self.consumer)
        return result

    def applies_itself(self, envelope: Envelope, mode: str) -> bool:
        """Primary mode, or verify mode for a job published to this route alone."""
        return mode == "primary" or (mode == "verify" and set(envelope.routes) <= {self.consumer})

    def apply(self, envelope: Envelope) -> Outcome:
        if self.ledger.digest_of(envelope.job_id) is not None:
            self.metrics.count(m.DUPLICATES_SKIPPED, Consumer=self.consumer)
            return Outcome.DUPLICATE
        result = self.compute(envelope)
        if self.ledger.apply(envelope.job_id, result_digest(result), self.consumer, result):
            self.metrics.count(m.JOBS_APPLIED, Consumer=self.consumer)
            return Outcome.APPLIED
        self.metrics.count(m.DUPLICATES_SKIPPED, Consumer=self.consumer)
        return Outcome.DUPLICATE

    def compare(self, envelope: Envelope, digest: str) -> Outcome:
        """Verify: compare a computed digest with the applied one (PENDING if not applied)."""
        applied = self.ledger.digest_of(envelope.job_id)
        if applied is None:
            return Outcome.PENDING
        if applied == digest:
            self.metrics.count(m.VERIFY_MATCHES)
            return Outcome.MATCH
        self.metrics.count(m.VERIFY_MISMATCHES)
        log.warning("verify mismatch for job %s", envelope.job_id)
        return Outcome.MISMATCH


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop``: the consumer finishes the current job, commits, closes.

    Call from the main thread (Python delivers signals there).
    """

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# --------------------------------------------------------------------------- SQS


class _Heartbeat:
    """Extends a message's visibility every ``interval`` seconds while a job runs."""

    def __init__(
        self, sqs: SQSClient, queue_url: str, receipt: str, timeout: int, interval: float
    ) -> None:
        self._args = (sqs, queue_url, receipt, timeout)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqs-heartbeat", daemon=True)
        self.extensions = 0

    def _run(self) -> None:
        sqs, queue_url, receipt, timeout = self._args
        while not self._stop.wait(self._interval):
            try:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=timeout
                )
                self.extensions += 1
            except Exception:
                log.warning("could not extend the visibility of an SQS message", exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class SqsConsumer:
    """Long-polls the queue named by the routing and processes messages one at a time."""

    route = "sqs"

    def __init__(
        self,
        sqs: SQSClient,
        routing: RoutingSource,
        processor: JobProcessor,
        *,
        wait_seconds: int = 20,
        max_messages: int = 10,
        idle_sleep: float = 1.0,
        verify_retry_seconds: int = 5,
        error_retry_seconds: int = 0,
        error_backoff: float = 1.0,
    ) -> None:
        self._sqs = sqs
        self._routing = routing
        self.processor = processor
        self._wait = wait_seconds
        self._max = max_messages
        self._idle = idle_sleep
        self._verify_retry = verify_retry_seconds
        self._error_retry = error_retry_seconds
        self._error_backoff = error_backoff
        self._queue_attrs: dict[str, tuple[int, int | None]] = {}

    def _attributes(self, queue_url: str) -> tuple[int, int | None]:
        """(visibility timeout, maxReceiveCount of the redrive policy or None)."""
        if queue_url not in self._queue_attrs:
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            ).get("Attributes", {})
            policy = attrs.get("RedrivePolicy")
            max_receive = int(json.loads(policy)["maxReceiveCount"]) if policy else None
            self._queue_attrs[queue_url] = (int(attrs.get("VisibilityTimeout", "30")), max_receive)
        return self._queue_attrs[queue_url]

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set. An unexpected error (SQS after botocore's retries, the
        database) is logged and the loop goes on after ``error_backoff``; the message it
        concerned was not deleted, so it comes back after its visibility timeout."""
        while not stop.is_set():
            try:
                self.poll_once(stop)
            except Exception:
                log.exception("sqs consumer: poll failed; retrying")
                stop.wait(self._error_backoff)

    def poll_once(self, stop: threading.Event) -> int:
        """One receive (long poll) and the processing of what it returned; returns the count."""
        routing = self._routing.get()
        mode = routing.mode(self.route)
        if mode == "off" or routing.queue_url is None:
            stop.wait(self._idle)
            return 0
        queue_url = routing.queue_url
        response = self._sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=self._max,
            WaitTimeSeconds=self._wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        for index, message in enumerate(messages):
            if stop.is_set():
                for rest in messages[index:]:
                    self._release(queue_url, rest.get("ReceiptHandle", ""), 0)
                break
            self.handle(queue_url, message, mode)
        return len(messages)

    def _release(self, queue_url: str, receipt: str, delay: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
            )
        except Exception:
            log.warning("could not release an SQS message", exc_info=True)

    def handle(self, queue_url: str, message: Mapping[str, Any], mode: str) -> Outcome | None:
        receipt: str = message["ReceiptHandle"]
        visibility, max_receive = self._attributes(queue_url)
        try:
            envelope = Envelope.from_json(message.get("Body", ""))
        except EnvelopeError as exc:
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            log.warning("poison SQS message (receive %d): %s", count, exc)
            if max_receive is not None and count >= max_receive:
                self.processor.metrics.count(m.DEAD_LETTERED, Consumer=self.route)
            self._release(queue_url, receipt, 0)
            return None
        interval = max(1.0, visibility / 3.0)
        try:
            with _Heartbeat(self._sqs, queue_url, receipt, visibility, interval):
                if self.processor.applies_itself(envelope, mode):
                    outcome = self.processor.apply(envelope)
                else:
                    digest = result_digest(self.processor.compute(envelope))
                    outcome = self.processor.compare(envelope, digest)
        except ProcessingError:
            log.warning("job %s failed on SQS; left for retry/redrive", envelope.job_id)
            self._release(queue_url, receipt, self._error_retry)
            return None
        if outcome is Outcome.PENDING:
            self._release(queue_url, receipt, self._verify_retry)
            return outcome
        self._sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
        return outcome


# --------------------------------------------------------------------------- Kafka


class KafkaConsumer:
    """Consumer-group reader of the routing's topic with manual commits.

    ``config_factory(routing)`` returns the confluent-kafka consumer configuration (see
    ``messaging.kafka.consumer_config``); ``dead_letter`` is a producer for the
    dead-letter topic. The client is created when the mode leaves ``off`` and closed when
    it returns to ``off``.
    """

    route = "kafka"

    def __init__(
        self,
        routing: RoutingSource,
        processor: JobProcessor,
        config_factory: Callable[[Any], Mapping[str, Any]],
        dead_letter: Producer,
        *,
        poll_timeout: float = 0.5,
        idle_sleep: float = 1.0,
        verify_wait: float = 10.0,
        handler_attempts: int = 3,
        error_backoff: float = 1.0,
    ) -> None:
        self._routing = routing
        self.processor = processor
        self._config_factory = config_factory
        self._dead_letter = dead_letter
        self._poll_timeout = poll_timeout
        self._idle = idle_sleep
        self._verify_wait = verify_wait
        self._handler_attempts = handler_attempts
        self._error_backoff = error_backoff
        self._consumer: Consumer | None = None
        self._topic: str | None = None
        self.committed = 0

    def _open(self, routing: Any) -> Consumer:
        from confluent_kafka import Consumer

        if self._consumer is not None and self._topic != routing.topic:
            self._close()
        if self._consumer is None:
            self._consumer = Consumer(dict(self._config_factory(routing)))
            self._consumer.subscribe([routing.topic])
            self._topic = routing.topic
        return self._consumer

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self._topic = None

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set, then close (every processed message is committed).

        An unexpected error (the database, the broker) is logged; the client is closed and
        reopened after ``error_backoff``, so reading resumes from the committed offset and
        the message is processed again (the ledger makes that safe)."""
        try:
            while not stop.is_set():
                try:
                    self.poll_once(stop)
                except Exception:
                    log.exception(
                        "kafka consumer: processing failed; resuming from the committed offset"
                    )
                    self._close()
                    stop.wait(self._error_backoff)
        finally:
            self._close()

    def poll_once(self, stop: threading.Event) -> Outcome | None:
        routing = self._routing.get()
        mode = routing.mode(self.route)
        if mode == "off" or routing.topic is None:
            self._close()
            stop.wait(self._idle)
            return None
        consumer = self._open(routing)
        message = consumer.poll(self._poll_timeout)
        if message is None:
            return None
        if message.error() is not None:
            log.warning("kafka consumer error: %s", message.error())
            return None
        return self.handle(consumer, message, mode, stop, routing.dead_letter_topic)

    def _seek_back(self, consumer: Consumer, message: Message) -> None:
        from confluent_kafka import TopicPartition

        consumer.seek(
            TopicPartition(message.topic() or "", message.partition() or 0, message.offset() or 0)
        )

    def _commit(self, consumer: Consumer, message: Message) -> None:
        consumer.commit(message=message, asynchronous=False)
        self.committed += 1

    def _to_dead_letter(self, message: Message, topic: str | None, reason: str) -> None:
        if topic is None:
            raise RuntimeError("no dead_letter_topic in the routing; cannot dead-letter")
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        self._dead_letter.produce(
            topic,
            key=message.key(),
            value=message.value(),
            headers={
                "jobstream.error": reason.encode("utf-8"),
                "jobstream.source": f"{message.topic()}/{message.partition()}/{message.offset()}".encode(),
            },
            on_delivery=on_delivery,
        )
        remaining = self._dead_letter.flush(30)
        if remaining or errors:
            raise RuntimeError(f"dead-letter produce failed: {errors or 'timeout'}")
        self.processor.metrics.count(m.DEAD_LETTERED, Consumer=self.route)

    def handle(
        self,
        consumer: Consumer,
        message: Message,
        mode: str,
        stop: threading.Event,
        dead_letter_topic: str | None,
    ) -> Outcome | None:
        try:
            envelope = Envelope.from_json(message.value() or b"")
        except EnvelopeError as exc:
            log.warning("poison Kafka message at offset %s: %s", message.offset(), exc)
            try:
                self._to_dead_letter(message, dead_letter_topic, str(exc))
            except RuntimeError:
                log.error("could not dead-letter; will retry", exc_info=True)
                self._seek_back(consumer, message)
                return None
            self._commit(consumer, message)
            return None
        outcome: Outcome | None = None
        for attempt in range(self._handler_attempts):
            try:
                outcome = self._process(envelope, mode, stop)
                break
            except ProcessingError as exc:
                if attempt + 1 < self._handler_attempts:
                    time.sleep(0.1 * 2**attempt)
                    continue
                try:
                    self._to_dead_letter(message, dead_letter_topic, str(exc))
                except RuntimeError:
                    self._seek_back(consumer, message)
                    return None
                self._commit(consumer, message)
                return None
        if outcome is None or outcome is Outcome.PENDING:
            self._seek_back(consumer, message)
            return outcome
        self._commit(consumer, message)
        return outcome

    def _process(self, envelope: Envelope, mode: str, stop: threading.Event) -> Outcome:
        if self.processor.applies_itself(envelope, mode):
            return self.processor.apply(envelope)
        digest = result_digest(self.processor.compute(envelope))
        deadline = time.monotonic() + self._verify_wait
        delay = 0.05
        while True:
            outcome = self.processor.compare(envelope, digest)
            if outcome is not Outcome.PENDING:
                return outcome
            if self._routing.get().mode(self.route) == "primary":
                return self.processor.apply(envelope)
            if stop.is_set() or time.monotonic() >= deadline:
                return Outcome.PENDING
            stop.wait(delay)
            delay = min(delay * 2, 1.0)
