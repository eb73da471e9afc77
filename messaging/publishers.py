"""Publishers: SQS, Kafka, dual-write and routed.

Every publisher implements ``MessageQueue``: ``publish(topic, message)`` and
``publish_batch(topic, messages)``; both return only when the route has accepted every
message, and raise ``PublishError`` (naming the job ids that failed) otherwise. ``topic`` is
the queue URL for SQS and the topic name for Kafka.

``DualWritePublisher`` writes to a primary destination synchronously (its failure fails the
publish) and hands the same envelopes to a background worker for the secondary
destinations: retried, counted (``SecondaryPublishFailures``) and recorded in a
``RepairLog`` when they still fail; the primary never waits for or fails because of them.
``RepairLog.replay`` publishes the recorded envelopes again and counts each one that got
through (``SecondaryPublishRepaired``).

``RoutedPublisher`` reads the routing parameter and publishes each envelope, stamped with
the routes of the current phase, to those routes (first = primary).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from messaging import metrics as m
from messaging.envelope import Envelope
from messaging.routing import Routing

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

SQS_BATCH_SIZE = 10
# PRODUCER_FENCED, _FATAL, _MSG_TIMED_OUT: after these the producer is replaced (see
# KafkaPublisher._replace_producer)
_FATAL_CODES = (90, -150, -192)
JOB_ID_ATTRIBUTE = "job_id"


class PublishError(Exception):
    """A publish that did not reach its route; ``failed`` maps job id -> reason."""

    def __init__(self, route: str, failed: Mapping[str, str]) -> None:
        self.route = route
        self.failed = dict(failed)
        sample = "; ".join(f"{k}: {v}" for k, v in list(self.failed.items())[:3])
        super().__init__(f"{len(self.failed)} message(s) not published to {route}: {sample}")


class MessageQueue(Protocol):
    route: str

    def publish(self, topic: str, message: Envelope) -> None: ...

    def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None: ...

    def close(self) -> None: ...


class _NullMetrics:
    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        pass

    def timing(self, name: str, milliseconds: float, **dimensions: str) -> None:
        pass


NULL_METRICS: m.MetricsSink = _NullMetrics()


# --------------------------------------------------------------------------- SQS


class SqsPublisher:
    """SQS through boto3 (give it a client built with ``messaging.aws.client``: standard retries).

    Batches use ``SendMessageBatch`` in chunks of 10. Entries SQS rejects with a server-side
    fault are sent again (``entry_attempts`` in all, with backoff; botocore retries whole
    calls, not single entries); entries still failing, or rejected as the sender's fault,
    are raised in a ``PublishError``: never dropped silently.
    """

    route = "sqs"

    def __init__(
        self,
        sqs: SQSClient,
        *,
        metrics: m.MetricsSink = NULL_METRICS,
        entry_attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self._sqs = sqs
        self._metrics = metrics
        self._entry_attempts = entry_attempts
        self._backoff = backoff

    @staticmethod
    def _attributes(message: Envelope) -> dict[str, Any]:
        return {
            JOB_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message.job_id},
            "schema_version": {"DataType": "Number", "StringValue": str(message.schema_version)},
        }

    def publish(self, topic: str, message: Envelope) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=topic,
                MessageBody=message.to_json(),
                MessageAttributes=self._attributes(message),
            )
        except Exception as exc:
            self._metrics.count(m.PUBLISH_ERRORS, Route=self.route)
            raise PublishError(self.route, {message.job_id: repr(exc)}) from exc
        self._metrics.count(m.JOBS_PUBLISHED, Route=self.route)

    def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
        failed: dict[str, str] = {}
        for start in range(0, len(messages), SQS_BATCH_SIZE):
            failed.update(self._send_chunk(topic, messages[start : start + SQS_BATCH_SIZE]))
        sent = len(messages) - len(failed)
        if sent:
            self._metrics.count(m.JOBS_PUBLISHED, sent, Route=self.route)
        if failed:
            self._metrics.count(m.PUBLISH_ERRORS, len(failed), Route=self.route)
            raise PublishError(self.route, failed)

    def _send_chunk(self, topic: str, chunk: Sequence[Envelope]) -> dict[str, str]:
        pending = {str(i): message for i, message in enumerate(chunk)}
        permanent: dict[str, str] = {}
        last_reason: dict[str, str] = {}
        for attempt in range(self._entry_attempts):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))
            entries: list[Any] = [
                {
                    "Id": entry_id,
                    "MessageBody": message.to_json(),
                    "MessageAttributes": self._attributes(message),
                }
                for entry_id, message in pending.items()
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=topic, Entries=entries)
            except Exception as exc:
                # botocore has already retried what is retryable (standard mode): the
                # request as a whole was refused, so every pending entry has failed.
                last_reason = {entry_id: repr(exc) for entry_id in pending}
                break
            retry: dict[str, Envelope] = {}
            for failure in response.get("Failed", []):
                entry_id = failure["Id"]
                message = pending[entry_id]
                reason = f"{failure.get('Code')}: {failure.get('Message', '')}"
                if failure.get("SenderFault"):
                    permanent[message.job_id] = reason
                else:
                    retry[entry_id] = message
                    last_reason[entry_id] = reason
            pending = retry
            if not pending:
                break
        for entry_id, message in pending.items():
            permanent[message.job_id] = last_reason.get(entry_id, "not accepted")
        return permanent

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- Kafka


class KafkaPublisher:
    """Kafka through confluent-kafka: acks=all, idempotent, key = job id.

    ``publish``/``publish_batch`` return once every delivery report has arrived (or raise
    ``PublishError`` for those that failed, e.g. after ``message.timeout.ms``).
    """

    route = "kafka"

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        metrics: m.MetricsSink = NULL_METRICS,
        producer: Producer | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self._config = dict(config)
        self._producer = producer or Producer(self._config)
        self._metrics = metrics
        timeout_ms = int(self._config.get("message.timeout.ms", 300_000))
        self._flush_timeout = timeout_ms / 1000.0 + 5.0

    def publish(self, topic: str, message: Envelope) -> None:
        self.publish_batch(topic, [message])

    def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
        from confluent_kafka import KafkaException

        results: dict[str, str | None] = {}
        lock = threading.Lock()

        fatal: list[bool] = []

        def report(job_id: str) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                with lock:
                    results[job_id] = None if err is None else str(err)
                    if err is not None and (err.fatal() or err.code() in _FATAL_CODES):
                        fatal.append(True)

            return on_delivery

        failed: dict[str, str] = {}
        for message in messages:
            while True:
                try:
                    self._producer.produce(
                        topic,
                        key=message.job_id.encode("utf-8"),
                        value=message.to_bytes(),
                        on_delivery=report(message.job_id),
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
                except KafkaException as exc:
                    failed[message.job_id] = str(exc)
                    break
        deadline = time.monotonic() + self._flush_timeout
        while True:
            with lock:
                done = len(results) + len(failed) >= len(messages)
            if done or time.monotonic() > deadline:
                break
            self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        for message in messages:
            if message.job_id in failed:
                continue
            with lock:
                outcome = results.get(message.job_id, "no delivery report before the deadline")
            if outcome is not None:
                failed[message.job_id] = outcome
        if fatal:
            self._replace_producer()
        sent = len(messages) - len(failed)
        if sent:
            self._metrics.count(m.JOBS_PUBLISHED, sent, Route=self.route)
        if failed:
            self._metrics.count(m.PUBLISH_ERRORS, len(failed), Route=self.route)
            raise PublishError(self.route, failed)

    def _replace_producer(self) -> None:
        """A fenced or fatally failed idempotent producer never recovers: start a new one
        (a new producer id). After a message timeout the idempotent producer bumps its epoch,
        which Tansu answers with PRODUCER_FENCED; a fresh producer avoids that on every broker."""
        from confluent_kafka import Producer

        log.warning("kafka producer failed fatally; replacing it")
        old, self._producer = self._producer, Producer(self._config)
        old.purge()
        old.flush(0)

    def close(self) -> None:
        self._producer.flush(self._flush_timeout)


# --------------------------------------------------------------------------- repair log


@dataclass(frozen=True)
class RepairEntry:
    route: str
    topic: str
    envelope: Envelope
    error: str


class RepairLog:
    """Envelopes a secondary route did not accept, kept for replay (JSON lines, or memory).

    ``replay`` publishes them again and keeps only those that fail again; each entry it
    re-published is counted in ``SecondaryPublishRepaired`` {Route} on ``metrics`` (the
    counterpart of the dual-write's ``SecondaryPublishFailures``, which the cutover preflight
    compares it with).
    """

    def __init__(
        self, path: str | Path | None = None, *, metrics: m.MetricsSink = NULL_METRICS
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._metrics = metrics
        self._lock = threading.Lock()
        self._memory: list[RepairEntry] = []
        if self._path is not None and self._path.exists():
            self._memory = self._read()

    def _read(self) -> list[RepairEntry]:
        assert self._path is not None
        entries = []
        for line in self._path.read_text().splitlines():
            if line.strip():
                doc = json.loads(line)
                entries.append(
                    RepairEntry(
                        doc["route"],
                        doc["topic"],
                        Envelope.from_json(doc["envelope"]),
                        doc["error"],
                    )
                )
        return entries

    def _write(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(
            "".join(
                json.dumps(
                    {
                        "route": e.route,
                        "topic": e.topic,
                        "envelope": e.envelope.to_json(),
                        "error": e.error,
                    }
                )
                + "\n"
                for e in self._memory
            )
        )
        tmp.replace(self._path)

    def record(self, route: str, topic: str, envelopes: Sequence[Envelope], error: str) -> None:
        with self._lock:
            self._memory.extend(RepairEntry(route, topic, e, error) for e in envelopes)
            self._write()

    def entries(self) -> list[RepairEntry]:
        with self._lock:
            return list(self._memory)

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    def replay(self, queues: Mapping[str, MessageQueue]) -> tuple[int, int]:
        """Publish every entry again; returns (replayed, still failing)."""
        with self._lock:
            pending, self._memory = self._memory, []
        remaining: list[RepairEntry] = []
        repaired: dict[str, int] = {}
        for entry in pending:
            target = queues.get(entry.route)
            try:
                if target is None:
                    raise PublishError(entry.route, {entry.envelope.job_id: "no publisher"})
                target.publish(entry.topic, entry.envelope)
            except PublishError as exc:
                remaining.append(RepairEntry(entry.route, entry.topic, entry.envelope, str(exc)))
            else:
                repaired[entry.route] = repaired.get(entry.route, 0) + 1
        with self._lock:
            self._memory = remaining + self._memory
            self._write()
        for route, count in repaired.items():
            self._metrics.count(m.SECONDARY_PUBLISH_REPAIRED, count, Route=route)
        return len(pending) - len(remaining), len(remaining)


# --------------------------------------------------------------------------- dual-write


@dataclass(frozen=True)
class Destination:
    queue: MessageQueue
    topic: str

    @property
    def route(self) -> str:
        return self.queue.route


class DualWritePublisher:
    """Primary synchronously; secondaries on a background worker (see the module docstring)."""

    def __init__(
        self,
        primary: Destination,
        secondaries: Sequence[Destination],
        *,
        repair_log: RepairLog,
        metrics: m.MetricsSink = NULL_METRICS,
        secondary_attempts: int = 3,
        backoff: float = 0.2,
        max_pending: int = 10_000,
    ) -> None:
        self.primary = primary
        self.secondaries = tuple(secondaries)
        self._repair = repair_log
        self._metrics = metrics
        self._attempts = secondary_attempts
        self._backoff = backoff
        self._pending: queue.Queue[tuple[Destination, list[Envelope]] | None] = queue.Queue(
            maxsize=max_pending
        )
        self._worker: threading.Thread | None = None
        if self.secondaries:
            self._worker = threading.Thread(
                target=self._work, name="dual-write-secondary", daemon=True
            )
            self._worker.start()

    def publish(self, message: Envelope) -> None:
        self.publish_batch([message])

    def publish_batch(self, messages: Sequence[Envelope]) -> None:
        self.primary.queue.publish_batch(self.primary.topic, messages)
        for destination in self.secondaries:
            try:
                self._pending.put_nowait((destination, list(messages)))
            except queue.Full:
                self._give_up(destination, list(messages), "secondary backlog full")

    def _give_up(self, destination: Destination, messages: list[Envelope], error: str) -> None:
        self._metrics.count(m.SECONDARY_PUBLISH_FAILURES, len(messages), Route=destination.route)
        self._repair.record(destination.route, destination.topic, messages, error)
        log.warning(
            "secondary %s: %d message(s) recorded for repair", destination.route, len(messages)
        )

    def _work(self) -> None:
        while True:
            item = self._pending.get()
            try:
                if item is None:
                    return
                destination, messages = item
                error = ""
                for attempt in range(self._attempts):
                    if attempt:
                        time.sleep(self._backoff * 2 ** (attempt - 1))
                    try:
                        destination.queue.publish_batch(destination.topic, messages)
                        break
                    except PublishError as exc:
                        messages = [e for e in messages if e.job_id in exc.failed]
                        error = str(exc)
                    except Exception as exc:
                        error = repr(exc)
                else:
                    self._give_up(destination, messages, error)
            finally:
                self._pending.task_done()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every secondary write has been sent or recorded for repair; False if
        ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        if self._worker is not None:
            self._pending.put(None)
            self._worker.join()
            self._worker = None


# --------------------------------------------------------------------------- routed


class RoutingSource(Protocol):
    def get(self) -> Routing: ...


class RoutedPublisher:
    """Publishes to the routes of the current phase, stamping them into each envelope.

    ``queues`` maps a route to its publisher; ``kafka_factory`` (optional) builds the Kafka
    publisher on first use from the routing's bootstrap brokers (phase 1 has none).
    """

    def __init__(
        self,
        routing: RoutingSource,
        queues: Mapping[str, MessageQueue],
        *,
        repair_log: RepairLog,
        metrics: m.MetricsSink = NULL_METRICS,
        kafka_factory: Callable[[Routing], MessageQueue] | None = None,
        secondary_attempts: int = 3,
    ) -> None:
        self._routing = routing
        self._queues = dict(queues)
        self._repair = repair_log
        self._metrics = metrics
        self._kafka_factory = kafka_factory
        self._attempts = secondary_attempts
        self._lock = threading.Lock()
        self._writers: dict[tuple[tuple[str, str], ...], DualWritePublisher] = {}

    def _queue(self, route: str, routing: Routing) -> MessageQueue:
        if route not in self._queues and route == "kafka" and self._kafka_factory is not None:
            self._queues[route] = self._kafka_factory(routing)
        if route not in self._queues:
            raise PublishError(route, {"*": f"no publisher configured for route {route}"})
        return self._queues[route]

    def _writer(self, routing: Routing) -> DualWritePublisher:
        destinations: list[tuple[str, str]] = []
        for route in routing.publish_targets:
            topic = routing.queue_url if route == "sqs" else routing.topic
            assert topic is not None  # Routing validation guarantees it
            destinations.append((route, topic))
        key = tuple(destinations)
        with self._lock:
            writer = self._writers.get(key)
            if writer is None:
                dests = [Destination(self._queue(r, routing), t) for r, t in destinations]
                writer = DualWritePublisher(
                    dests[0],
                    dests[1:],
                    repair_log=self._repair,
                    metrics=self._metrics,
                    secondary_attempts=self._attempts,
                )
                self._writers[key] = writer
            return writer

    def publish(self, message: Envelope) -> Envelope:
        return self.publish_batch([message])[0]

    def publish_batch(self, messages: Sequence[Envelope]) -> list[Envelope]:
        routing = self._routing.get()
        stamped = [e.with_routes(routing.publish_targets) for e in messages]
        self._writer(routing).publish_batch(stamped)
        return stamped

    def queues(self) -> dict[str, MessageQueue]:
        with self._lock:
            return dict(self._queues)

    def drain(self, timeout: float | None = None) -> bool:
        with self._lock:
            writers = list(self._writers.values())
        return all(writer.drain(timeout) for writer in writers)

    def close(self) -> None:
        with self._lock:
            writers = list(self._writers.values())
            self._writers.clear()
        for writer in writers:
            writer.close()
        for q in self._queues.values():
            q.close()
