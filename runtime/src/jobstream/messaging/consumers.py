"""Consumers: one SQS message as one Batch job, and the Kafka consumer loop, both calling the
team's handler through ``JobProcessor``.

The mode of each route comes from the routing document (re-read on every poll, cached by the
reader):

- ``primary`` and ``drain``: compute the result and apply it through the idempotency ledger (a job
  the ledger already holds is skipped: ``DuplicatesSkipped``);
- ``verify`` (the Kafka consumer in phase 3): a job that also went to SQS is computed and its
  digest compared with the one the SQS path applied (``VerifyMatches`` / ``VerifyMismatches``).
  If nothing is applied yet, the consumer waits at most ``verify_wait`` seconds, then records its
  digest in the ledger (``VerifyDeferred``) and moves on: the SQS path compares when it applies
  the job. Such a job is never applied nor dead-lettered here, whatever happens (a handler
  failure is counted and the job left to the SQS path), and never holds its partition longer
  than the bounded wait. A job published to Kafka alone (during phase 4, before a rollback to 3)
  is applied, as in primary mode;
- ``off``: the Kafka consumer does not read.

Poison messages (``EnvelopeError``) and jobs whose handler fails on every attempt: the Kafka
consumer produces them to the dead-letter topic (reason in the headers) and commits; on the SQS
route the Batch job fails and the stack's failed-jobs capture keeps the message
(``SqsJobConsumer`` raises, the worker turns that into an exit status).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from jobstream.contract import metrics as m
from jobstream.contract.phases import ConsumerMode
from jobstream.contract.routing import APPLYING_MODES
from jobstream.messaging.envelope import Envelope, EnvelopeError
from jobstream.messaging.ledger import Ledger, result_digest
from jobstream.messaging.metrics import NULL_METRICS, MetricsSink
from jobstream.messaging.routing import RoutingSource

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, Producer

log = logging.getLogger(__name__)

JobHandler = Callable[[Envelope], Mapping[str, Any]]


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    MATCH = "match"
    MISMATCH = "mismatch"
    DEFERRED = "deferred"
    """Verify mode: not applied yet; the digest is recorded and compared when it is."""
    LEFT_TO_SQS = "left-to-sqs"
    """Verify mode: the handler failed on a job the SQS path owns; nothing parked here."""


class ProcessingError(Exception):
    """The job handler failed for this message (on every attempt)."""


@dataclass
class JobProcessor:
    """Runs the handler and talks to the ledger, for one consumer (``sqs`` or ``kafka``).

    ``handler_attempts`` in-process attempts (with a short backoff) absorb a handler that fails
    intermittently; ``ProcessingError`` is raised when every attempt failed.
    """

    consumer: str
    handler: JobHandler
    ledger: Ledger
    metrics: MetricsSink = NULL_METRICS
    handler_attempts: int = 3
    handler_backoff: float = 0.1

    def compute(self, envelope: Envelope) -> Mapping[str, Any]:
        error: Exception | None = None
        for attempt in range(self.handler_attempts):
            if attempt:
                time.sleep(self.handler_backoff * 2 ** (attempt - 1))
            start = time.perf_counter()
            try:
                return self.handler(envelope)
            except Exception as exc:
                error = exc
                self.metrics.count(m.PROCESSING_ERRORS, Consumer=self.consumer)
                log.warning(
                    "job %s: handler failed (attempt %d of %d): %r",
                    envelope.job_id,
                    attempt + 1,
                    self.handler_attempts,
                    exc,
                )
            finally:
                elapsed = (time.perf_counter() - start) * 1000.0
                self.metrics.timing(m.PROCESSING_TIME, elapsed, Consumer=self.consumer)
        raise ProcessingError(f"job {envelope.job_id}: handler failed: {error!r}") from error

    def applies_itself(self, envelope: Envelope, mode: str) -> bool:
        """Primary or drain mode, or verify mode for a job published to this route alone."""
        return mode in APPLYING_MODES or (
            mode == ConsumerMode.VERIFY.value and set(envelope.routes) <= {self.consumer}
        )

    def apply(self, envelope: Envelope) -> Outcome:
        if self.ledger.digest_of(envelope.job_id) is not None:
            self.metrics.count(m.DUPLICATES_SKIPPED, Consumer=self.consumer)
            return Outcome.DUPLICATE
        result = self.compute(envelope)
        digest = result_digest(result)
        if not self.ledger.apply(envelope.job_id, digest, self.consumer, result):
            self.metrics.count(m.DUPLICATES_SKIPPED, Consumer=self.consumer)
            return Outcome.DUPLICATE
        self.metrics.count(m.JOBS_APPLIED, Consumer=self.consumer)
        deferred = self.ledger.claim_verify(envelope.job_id)
        if deferred is not None:
            self._count_parity(envelope, applied=digest, verified=deferred)
        return Outcome.APPLIED

    def compare(self, envelope: Envelope, digest: str) -> Outcome | None:
        """Verify: compare a computed digest with the applied one (None if not applied yet)."""
        applied = self.ledger.digest_of(envelope.job_id)
        if applied is None:
            return None
        return self._count_parity(envelope, applied=applied, verified=digest)

    def defer(self, envelope: Envelope, digest: str) -> Outcome:
        """Verify: record the digest for the consumer that applies the job to compare with.
        If the job was applied meanwhile, whichever side claims the record first compares."""
        self.ledger.defer_verify(envelope.job_id, digest, self.consumer)
        self.metrics.count(m.VERIFY_DEFERRED)
        applied = self.ledger.digest_of(envelope.job_id)
        if applied is not None and self.ledger.claim_verify(envelope.job_id) is not None:
            return self._count_parity(envelope, applied=applied, verified=digest)
        return Outcome.DEFERRED

    def _count_parity(self, envelope: Envelope, *, applied: str, verified: str) -> Outcome:
        if applied == verified:
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


# --------------------------------------------------------------------------- SQS (Batch job)


class SqsJobConsumer:
    """One SQS message, delivered to one AWS Batch job by the stack's pipe.

    The pipe has already deleted the message from the queue when the job starts, so this job owns
    it: ``process`` applies it (every mode but verify; in ``off`` too, with a warning, because a
    job that reached SQS must be applied by the SQS path) or raises. ``EnvelopeError`` (poison)
    and ``ProcessingError`` (the handler failed on every attempt) are permanent; anything else (the
    database, SSM) is a dependency failure that AWS Batch retries.
    """

    route = "sqs"

    def __init__(self, routing: RoutingSource, processor: JobProcessor) -> None:
        self._routing = routing
        self.processor = processor

    @staticmethod
    def parse(body: str) -> Envelope:
        """The envelope of the message body; raises ``EnvelopeError`` for a poison message."""
        return Envelope.from_json(body)

    def process(self, envelope: Envelope) -> Outcome:
        mode = self._routing.get().mode(self.route)
        if mode == ConsumerMode.VERIFY.value and not self.processor.applies_itself(envelope, mode):
            digest = result_digest(self.processor.compute(envelope))
            return self.processor.compare(envelope, digest) or self.processor.defer(
                envelope, digest
            )
        if mode == ConsumerMode.OFF.value:
            log.warning(
                "job %s reached the SQS path while the routing says its consumer is off; "
                "applying it (a job that reached SQS is applied by the SQS path)",
                envelope.job_id,
            )
        return self.processor.apply(envelope)


# --------------------------------------------------------------------------- Kafka


class KafkaConsumer:
    """Consumer-group reader of the routing's topic with manual commits.

    ``config_factory(routing)`` returns the confluent-kafka consumer configuration (see
    ``jobstream.messaging.kafka.consumer_config``); ``dead_letter`` is a producer for the
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
        verify_wait: float = 0.0,
        error_backoff: float = 1.0,
    ) -> None:
        self._routing = routing
        self.processor = processor
        self._config_factory = config_factory
        self._dead_letter = dead_letter
        self._poll_timeout = poll_timeout
        self._idle = idle_sleep
        self._verify_wait = verify_wait
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
                except Exception as exc:
                    log.error(
                        "kafka consumer: processing failed (%r); resuming from the committed "
                        "offset",
                        exc,
                    )
                    self._close()
                    stop.wait(self._error_backoff)
        finally:
            self._close()

    def poll_once(self, stop: threading.Event) -> Outcome | None:
        routing = self._routing.get()
        mode = routing.mode(self.route)
        if mode == ConsumerMode.OFF.value or routing.topic is None:
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

    def _park(self, consumer: Consumer, message: Message, topic: str | None, reason: str) -> None:
        try:
            self._to_dead_letter(message, topic, reason)
        except RuntimeError:
            log.error(
                "could not dead-letter the message at offset %s; will retry", message.offset()
            )
            self._seek_back(consumer, message)
            return
        self._commit(consumer, message)

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
            # Its routes cannot be read, so it is parked here in every mode (if it also went to
            # SQS, the failed-jobs capture holds a second copy; the ledger applies it once).
            log.warning("poison Kafka message at offset %s: %s", message.offset(), exc)
            self._park(consumer, message, dead_letter_topic, str(exc))
            return None
        if self.processor.applies_itself(envelope, mode):
            try:
                outcome = self.processor.apply(envelope)
            except ProcessingError as exc:
                self._park(consumer, message, dead_letter_topic, str(exc))
                return None
        else:
            outcome = self._verify(envelope, stop)
        self._commit(consumer, message)
        return outcome

    def _verify(self, envelope: Envelope, stop: threading.Event) -> Outcome:
        """A job that also went to SQS: compare within a bounded wait, then defer; never apply
        it (unless the routing turns this consumer primary meanwhile) and never park it."""
        try:
            digest = result_digest(self.processor.compute(envelope))
        except ProcessingError as exc:
            log.warning("verify: %s; the SQS path owns the job", exc)
            return Outcome.LEFT_TO_SQS
        deadline = time.monotonic() + self._verify_wait
        delay = 0.05
        while True:
            outcome = self.processor.compare(envelope, digest)
            if outcome is not None:
                return outcome
            if self._routing.get().applies(self.route):
                return self.processor.apply(envelope)
            if stop.is_set() or time.monotonic() >= deadline:
                return self.processor.defer(envelope, digest)
            stop.wait(delay)
            delay = min(delay * 2, 1.0)
