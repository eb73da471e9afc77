"""Publishers: SQS, Kafka, dual-write and routed.

Every publisher implements ``MessageQueue``: ``publish(topic, message)`` and
``publish_batch(topic, messages)``; both return only when the route has accepted every
message, and raise ``PublishError`` (naming the job ids that failed) otherwise. ``topic`` is
the queue URL for SQS and the topic name for Kafka.

``DualWritePublisher`` writes to a primary destination synchronously (its failure fails the
publish) and hands every envelope the primary accepted to a background worker for the secondary
destinations, recorded first in a ``RepairLog`` (a journal of the copies not confirmed yet):
retried, counted (``SecondaryPublishFailures``) and kept in the log when they still fail; the
primary never waits for or fails because of them. ``RepairLog.replay`` (``jobstream replay``)
publishes the outstanding copies again and counts each one that got through
(``SecondaryPublishRepaired``). A lost secondary copy costs verify parity, never a job: the
primary route applies every job it accepted (DESIGN.md, processing guarantee).

``RoutedPublisher`` reads the routing parameter and publishes each envelope, stamped with
the routes of the current phase, to those routes (first = primary).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jobstream.contract import metrics as m
from jobstream.contract.env import MAX_JOB_MESSAGE_CHARS
from jobstream.contract.routing import Routing
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.metrics import NULL_METRICS, MetricsSink
from jobstream.messaging.routing import RoutingSource

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


# --------------------------------------------------------------------------- SQS


class SqsPublisher:
    """SQS through boto3 (give it a client built with ``messaging.aws.client``: standard retries).

    Batches use ``SendMessageBatch`` in chunks of 10. Entries SQS rejects with a server-side
    fault are sent again (``entry_attempts`` in all, with backoff; botocore retries whole
    calls, not single entries); entries still failing, or rejected as the sender's fault,
    are raised in a ``PublishError``: never dropped silently. An envelope longer than
    ``max_body_chars`` (default: what the pipe can hand to a Batch job,
    ``jobstream.contract.env.MAX_JOB_MESSAGE_CHARS``) is refused before sending.
    """

    route = "sqs"

    def __init__(
        self,
        sqs: SQSClient,
        *,
        metrics: MetricsSink = NULL_METRICS,
        entry_attempts: int = 3,
        backoff: float = 0.2,
        max_body_chars: int = MAX_JOB_MESSAGE_CHARS,
    ) -> None:
        self._sqs = sqs
        self._metrics = metrics
        self._entry_attempts = entry_attempts
        self._backoff = backoff
        self._max_body = max_body_chars

    def _too_long(self, messages: Sequence[Envelope]) -> dict[str, str]:
        return {
            e.job_id: f"envelope of {n} characters exceeds the SQS route's {self._max_body}"
            for e in messages
            if (n := len(e.to_json())) > self._max_body
        }

    @staticmethod
    def _attributes(message: Envelope) -> dict[str, Any]:
        return {
            JOB_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message.job_id},
            "schema_version": {"DataType": "Number", "StringValue": str(message.schema_version)},
        }

    def publish(self, topic: str, message: Envelope) -> None:
        too_long = self._too_long([message])
        if too_long:
            self._metrics.count(m.PUBLISH_ERRORS, Route=self.route)
            raise PublishError(self.route, too_long)
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
        failed = self._too_long(messages)
        sendable = [e for e in messages if e.job_id not in failed]
        for start in range(0, len(sendable), SQS_BATCH_SIZE):
            failed.update(self._send_chunk(topic, sendable[start : start + SQS_BATCH_SIZE]))
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
        metrics: MetricsSink = NULL_METRICS,
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


class RepairState(StrEnum):
    PENDING = "pending"
    """Accepted by the primary, handed to the secondary, not confirmed yet."""
    FAILED = "failed"
    """The secondary refused it after every attempt (or its producer stopped first)."""


@dataclass(frozen=True)
class RepairEntry:
    id: str
    """Unique across writers: the writer instance and a counter."""
    route: str
    topic: str
    envelope: Envelope
    state: RepairState
    error: str
    owner: str
    """The writer instance that recorded it (a restarted producer is a new instance)."""
    at: float
    """When it was recorded (seconds since the epoch)."""


class RepairLog:
    """The journal of every secondary (dual-write) copy that has not been confirmed yet.

    A copy is recorded as *pending* once the primary route has accepted the job, before it goes
    to the secondary worker; it leaves the log when the secondary confirms it (*delivered*), and
    becomes *failed* when the secondary refuses it after every attempt. A producer killed with
    copies in flight leaves them pending: the next producer on the same log (one producer per
    log file) marks them failed when it opens the log (``adopt_orphans``), and ``replay`` (the
    ``jobstream replay`` command) publishes them again. Without a path the log lives in memory
    only, and dies with its process.

    On disk: JSON lines appended under an advisory lock (``<path>.lock``), so an operator's
    ``jobstream replay`` and a running producer may share it; ``compact`` rewrites the file with
    only the outstanding entries (write, then rename, under the same lock). Appends are flushed to
    the operating system on every call, which survives the process being killed; ``fsync=True``
    also survives the machine losing power, at the cost of a disk sync per batch.

    Counted on ``metrics``: ``SecondaryPublishFailures`` {Route} for each copy that becomes failed,
    ``SecondaryPublishRepaired`` {Route} for each outstanding copy that ``replay`` delivered.
    """

    COMPACT_EVERY = 10_000
    """Appended lines after which the writer compacts the file."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        metrics: MetricsSink = NULL_METRICS,
        fsync: bool = False,
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._metrics = metrics
        self._fsync = fsync
        self._lock = threading.Lock()
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._entries: dict[str, RepairEntry] = {}
        self._counter = 0
        self._appended = 0
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._file_lock():
                self._entries = self._load()

    @property
    def path(self) -> Path | None:
        return self._path

    # ---- the file -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self._path is not None
        import fcntl

        with open(self._path.with_name(self._path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, RepairEntry]:
        """The outstanding entries of the file, oldest first."""
        assert self._path is not None
        entries: dict[str, RepairEntry] = {}
        if not self._path.exists():
            return entries
        for number, line in enumerate(self._path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                op = doc["op"]
            except (ValueError, KeyError, TypeError):
                # A line cut short by a crash mid-write: everything before it is intact.
                log.warning("%s:%d: unreadable repair-log line skipped", self._path, number)
                continue
            if op == "pending":
                entry = RepairEntry(
                    id=str(doc["id"]),
                    route=doc["route"],
                    topic=doc["topic"],
                    envelope=Envelope.from_json(doc["envelope"]),
                    state=RepairState(doc.get("state", RepairState.PENDING)),
                    error=doc.get("error", ""),
                    owner=doc.get("owner", ""),
                    at=float(doc.get("at", 0.0)),
                )
                entries[entry.id] = entry
            elif op == "delivered":
                for entry_id in doc["ids"]:
                    entries.pop(str(entry_id), None)
            elif op == "failed":
                for entry_id in doc["ids"]:
                    old = entries.get(str(entry_id))
                    if old is not None:
                        entries[old.id] = replace(
                            old, state=RepairState.FAILED, error=doc.get("error", "")
                        )
        return entries

    def _append(self, docs: Sequence[Mapping[str, Any]]) -> None:
        if self._path is None or not docs:
            return
        text = "".join(json.dumps(d, sort_keys=True) + "\n" for d in docs)
        with self._file_lock(), open(self._path, "a") as out:
            out.write(text)
            out.flush()
            if self._fsync:
                os.fsync(out.fileno())
        with self._lock:
            self._appended += len(docs)
            due = self._appended >= self.COMPACT_EVERY
        if due:
            self.compact()

    @staticmethod
    def _pending_doc(entry: RepairEntry) -> dict[str, Any]:
        return {
            "op": "pending",
            "id": entry.id,
            "route": entry.route,
            "topic": entry.topic,
            "envelope": entry.envelope.to_json(),
            "state": entry.state.value,
            "error": entry.error,
            "owner": entry.owner,
            "at": entry.at,
        }

    def compact(self) -> None:
        """Rewrite the file with only the outstanding entries. Every change of state is appended
        as it happens, so the file (re-read under the lock) is the truth, whoever wrote it."""
        with self._lock:
            self._appended = 0
            if self._path is None:
                return
            with self._file_lock():
                outstanding = self._load()
                tmp = self._path.with_name(self._path.name + ".tmp")
                with open(tmp, "w") as out:
                    for entry in outstanding.values():
                        out.write(json.dumps(self._pending_doc(entry), sort_keys=True) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                tmp.replace(self._path)
                self._entries = outstanding

    # ---- the life of an entry -----------------------------------------------------------

    def add_pending(self, route: str, topic: str, envelopes: Sequence[Envelope]) -> list[str]:
        """Record copies about to go to a secondary route; returns their entry ids."""
        now = time.time()
        with self._lock:
            start, self._counter = self._counter, self._counter + len(envelopes)
            entries = [
                RepairEntry(
                    f"{self.owner}-{start + i}", route, topic, e, RepairState.PENDING, "",
                    self.owner, now,
                )
                for i, e in enumerate(envelopes)
            ]  # fmt: skip
            for entry in entries:
                self._entries[entry.id] = entry
        self._append([self._pending_doc(e) for e in entries])
        return [e.id for e in entries]

    def mark_delivered(self, ids: Sequence[str]) -> None:
        with self._lock:
            for entry_id in ids:
                self._entries.pop(entry_id, None)
        self._append([{"op": "delivered", "ids": list(ids)}] if ids else [])

    def mark_failed(
        self, ids: Sequence[str], error: str, *, metrics: MetricsSink | None = None
    ) -> None:
        """Mark copies failed and count them in ``SecondaryPublishFailures`` on ``metrics``
        (default: the log's own sink)."""
        per_route: dict[str, int] = {}
        with self._lock:
            for entry_id in ids:
                entry = self._entries.get(entry_id)
                if entry is None or entry.state is RepairState.FAILED:
                    continue
                self._entries[entry_id] = replace(entry, state=RepairState.FAILED, error=error)
                per_route[entry.route] = per_route.get(entry.route, 0) + 1
        self._append([{"op": "failed", "ids": list(ids), "error": error}] if ids else [])
        for route, count in per_route.items():
            (metrics or self._metrics).count(m.SECONDARY_PUBLISH_FAILURES, count, Route=route)

    def record(self, route: str, topic: str, envelopes: Sequence[Envelope], error: str) -> None:
        """Record copies the secondary refused (pending, then failed at once)."""
        self.mark_failed(self.add_pending(route, topic, envelopes), error)

    def adopt_orphans(self, *, metrics: MetricsSink | None = None) -> int:
        """Mark failed every pending copy recorded by an earlier writer of this log (a producer
        that stopped before its copies were confirmed); returns how many. Call it once when a
        producer starts: one producer writes one log file."""
        with self._lock:
            orphans = [
                e.id
                for e in self._entries.values()
                if e.state is RepairState.PENDING and e.owner != self.owner
            ]
        if orphans:
            log.warning(
                "repair log %s: %d secondary copies of an earlier producer were never confirmed; "
                "marked for replay",
                self._path,
                len(orphans),
            )
            self.mark_failed(
                orphans, "the producer stopped before the copy was confirmed", metrics=metrics
            )
        return len(orphans)

    # ---- reading and replaying ----------------------------------------------------------

    def entries(self, *, include_pending: bool = False) -> list[RepairEntry]:
        """Outstanding copies, oldest first: the failed ones (and the pending ones if asked)."""
        with self._lock:
            found = list(self._entries.values())
        return [e for e in found if include_pending or e.state is RepairState.FAILED]

    def __len__(self) -> int:
        return len(self.entries())

    def replay(
        self,
        queues: Mapping[str, MessageQueue],
        *,
        pending_older_than: float | None = None,
    ) -> tuple[int, int]:
        """Publish every failed copy again (and, with ``pending_older_than`` seconds, pending ones
        at least that old: copies whose producer may have died); returns (delivered, still
        failing). A copy published twice is harmless: the consumers' ledger applies a job once."""
        if self._path is not None:
            with self._lock, self._file_lock():
                self._entries = self._load()
        now = time.time()
        wanted = [
            e
            for e in self.entries(include_pending=pending_older_than is not None)
            if e.state is RepairState.FAILED
            or (pending_older_than is not None and now - e.at >= pending_older_than)
        ]
        delivered: list[str] = []
        still: dict[str, list[str]] = {}
        repaired: dict[str, int] = {}
        for entry in wanted:
            target = queues.get(entry.route)
            try:
                if target is None:
                    raise PublishError(entry.route, {entry.envelope.job_id: "no publisher"})
                target.publish(entry.topic, entry.envelope)
            except PublishError as exc:
                still.setdefault(str(exc), []).append(entry.id)
            else:
                delivered.append(entry.id)
                repaired[entry.route] = repaired.get(entry.route, 0) + 1
        self.mark_delivered(delivered)
        for error, ids in still.items():
            with self._lock:
                for entry_id in ids:
                    entry = self._entries.get(entry_id)
                    if entry is not None:
                        self._entries[entry_id] = replace(
                            entry, state=RepairState.FAILED, error=error
                        )
            self._append([{"op": "failed", "ids": ids, "error": error}])
        for route, count in repaired.items():
            self._metrics.count(m.SECONDARY_PUBLISH_REPAIRED, count, Route=route)
        self.compact()
        return len(delivered), sum(len(v) for v in still.values())


# --------------------------------------------------------------------------- dual-write


@dataclass(frozen=True)
class Destination:
    queue: MessageQueue
    topic: str

    @property
    def route(self) -> str:
        return self.queue.route


class DualWritePublisher:
    """Primary synchronously; secondaries on a background worker (see the module docstring).

    Every message the primary accepted is handed to the secondaries, also when part of a batch
    failed on the primary (the publish then raises for the failed part only), and is recorded in
    the repair log as pending first, so a producer killed with copies in flight leaves them there.
    """

    def __init__(
        self,
        primary: Destination,
        secondaries: Sequence[Destination],
        *,
        repair_log: RepairLog,
        metrics: MetricsSink = NULL_METRICS,
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
        self._pending: queue.Queue[tuple[Destination, list[tuple[str, Envelope]]] | None] = (
            queue.Queue(maxsize=max_pending)
        )
        self._worker: threading.Thread | None = None
        if self.secondaries:
            repair_log.adopt_orphans(metrics=metrics)
            self._worker = threading.Thread(
                target=self._work, name="dual-write-secondary", daemon=True
            )
            self._worker.start()

    def publish(self, message: Envelope) -> None:
        self.publish_batch([message])

    def publish_batch(self, messages: Sequence[Envelope]) -> None:
        refused: PublishError | None = None
        try:
            self.primary.queue.publish_batch(self.primary.topic, messages)
            accepted = list(messages)
        except PublishError as exc:
            refused = exc
            accepted = [e for e in messages if e.job_id not in exc.failed]
            if "*" in exc.failed:
                accepted = []
        for destination in self.secondaries:
            if accepted:
                self._hand_over(destination, accepted)
        if refused is not None:
            raise refused

    def _hand_over(self, destination: Destination, messages: list[Envelope]) -> None:
        seqs = self._repair.add_pending(destination.route, destination.topic, messages)
        item = (destination, list(zip(seqs, messages, strict=True)))
        try:
            self._pending.put_nowait(item)
        except queue.Full:
            self._give_up(destination, seqs, "secondary backlog full")

    def _give_up(self, destination: Destination, seqs: Sequence[str], error: str) -> None:
        self._repair.mark_failed(seqs, error, metrics=self._metrics)
        log.warning("secondary %s: %d message(s) recorded for repair", destination.route, len(seqs))

    def _work(self) -> None:
        while True:
            item = self._pending.get()
            try:
                if item is None:
                    return
                destination, pairs = item
                error = ""
                for attempt in range(self._attempts):
                    if attempt:
                        time.sleep(self._backoff * 2 ** (attempt - 1))
                    try:
                        destination.queue.publish_batch(destination.topic, [e for _, e in pairs])
                    except PublishError as exc:
                        delivered = [s for s, e in pairs if e.job_id not in exc.failed]
                        if "*" not in exc.failed:
                            self._repair.mark_delivered(delivered)
                            pairs = [(s, e) for s, e in pairs if e.job_id in exc.failed]
                        error = str(exc)
                    except Exception as exc:
                        error = repr(exc)
                    else:
                        self._repair.mark_delivered([s for s, _ in pairs])
                        break
                else:
                    self._give_up(destination, [s for s, _ in pairs], error)
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
        metrics: MetricsSink = NULL_METRICS,
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
