"""The three places where a job is parked, read without consuming anything, and what each
parked message says (``jobstream parked`` and ``jobstream redrive`` share this).

- ``dlq``: the SQS job queue's dead-letter queue ``jobstream-<stack>-jobs-dlq``. Messages the pipe
  could not submit to AWS Batch within the queue's ``maxReceiveCount`` receives; the body is what
  the producer sent (an envelope, or a poison body). SQS records no reason.
- ``failed-jobs``: the failed-jobs capture ``jobstream-<stack>-failed-jobs`` (components/
  failed_jobs.py). Each message is a whole EventBridge ``Batch Job State Change`` event of a job
  that reached FAILED; its ``detail`` is the job as ``DescribeJobs`` returns it, whose
  ``container.environment`` holds the message body the pipe passed (``JOBSTREAM_JOB_MESSAGE``).
  The reason is the last attempt's exit status (``jobstream.contract.exits``) and the status
  reasons AWS Batch gives.
- ``dead-letter-topic``: the Kafka dead-letter topic of the routing document. Key = job id,
  value = the original bytes, headers ``jobstream.error`` (the reason) and ``jobstream.source``
  (topic/partition/offset it came from), as ``jobstream.messaging.consumers`` produces them.

Reading without consuming: SQS messages are received with a visibility timeout that only has to
outlast the scan (so one scan sees each message once) and are all made visible again
(``ChangeMessageVisibility`` 0) the moment the scan ends, also on an error or Ctrl-C. The Kafka
topic is read by a client assigned to its partitions (no group membership, no commit); it reads
the committed offsets of the redrive group (``Names.redrive_group``) only to tell what ``redrive``
has already copied back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from jobstream.contract import env
from jobstream.contract.exits import reason_for_exit
from jobstream.contract.routing import Routing
from jobstream.messaging.envelope import Envelope, EnvelopeError
from jobstream.messaging.kafka import consumer_config
from ops.aws_clients import CannotTellError, NotFoundError, aws_call
from ops.kafka_log import kafka_logger
from ops.live import StackAccess

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

log = logging.getLogger(__name__)

DLQ = "dlq"
FAILED_JOBS = "failed-jobs"
DEAD_LETTER_TOPIC = "dead-letter-topic"
PLACES: tuple[str, ...] = (DLQ, FAILED_JOBS, DEAD_LETTER_TOPIC)
PLACE_TITLES: Mapping[str, str] = {
    DLQ: "SQS DLQ",
    FAILED_JOBS: "failed-jobs capture",
    DEAD_LETTER_TOPIC: "Kafka dead-letter topic",
}

SCAN_VISIBILITY_SECONDS = 120
"""How long a scanned SQS message stays invisible at most (it is released when the scan ends)."""
RECEIVE_WAIT_SECONDS = 1
"""Long polling on each receive: asks every SQS server, so an empty answer means empty."""
SQS_BATCH = 10
KAFKA_IDLE_SECONDS = 5.0
"""A Kafka poll that returns nothing for this long ends a read (the end of a topic on any
broker, including one whose high watermarks are wrong, such as Tansu's)."""
KAFKA_SETTLE_SECONDS = 0.5
"""The shorter poll once every partition has reached the high watermark read at the start."""
ERROR_HEADER = "jobstream.error"
SOURCE_HEADER = "jobstream.source"
DLQ_REASON = (
    "the pipe did not submit it to AWS Batch within the job queue's maxReceiveCount receives "
    "(see the pipe-failures alarm and the pipe's logs)"
)


class State(StrEnum):
    MOVABLE = "movable"
    """A valid envelope: ``redrive`` puts it back."""
    POISON = "poison"
    """The body is not a valid envelope: never moved; fix the producer, then drop it by hand."""
    NO_BODY = "no-body"
    """The record holds no message body (a failed-jobs record without JOBSTREAM_JOB_MESSAGE)."""
    REDRIVEN = "redriven"
    """Dead-letter topic: already copied back by ``redrive`` (Kafka records are not deleted)."""
    ARCHIVED = "archived"
    """Dead-letter topic: poison that ``redrive --archive-poison`` wrote to its archive and
    committed past (Kafka records are not deleted). Poison that ``redrive`` before this state existed
    committed past without archiving it reads the same: the record is still on the topic until
    its retention ends."""


@dataclass(frozen=True)
class Parked:
    """One parked message: where, which job, why, and whether it can be put back."""

    place: str
    key: str
    """SQS message id, or ``partition/offset`` on the dead-letter topic."""
    job_id: str | None
    reason: str
    """Why it is parked (what the place records)."""
    state: State
    body: bytes | None
    """The message exactly as parked: what ``redrive`` sends back (None: nothing to send)."""
    parked_at: datetime | None
    problem: str = ""
    """Why it cannot be moved (poison, no body), empty when it can."""
    batch_job_id: str | None = None

    @property
    def movable(self) -> bool:
        return self.state is State.MOVABLE

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.parked_at is None else max(0.0, (now - self.parked_at).total_seconds())

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "place": self.place,
            "key": self.key,
            "job_id": self.job_id,
            "batch_job_id": self.batch_job_id,
            "state": self.state.value,
            "reason": self.reason,
            "problem": self.problem,
            "parked_at": None if self.parked_at is None else self.parked_at.isoformat(),
            "age_seconds": self.age_seconds(now),
        }


def _envelope(body: bytes | str) -> tuple[Envelope | None, str]:
    try:
        return Envelope.from_json(body), ""
    except EnvelopeError as error:
        return None, f"not a valid envelope: {error}"


def _from_millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000.0, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


# ---- what each place says ----------------------------------------------------------------------


def from_dlq_message(message: Mapping[str, Any]) -> Parked:
    """An SQS DLQ message (``ReceiveMessage`` with all attributes)."""
    body = str(message.get("Body", ""))
    attributes = message.get("Attributes") or {}
    envelope, problem = _envelope(body)
    attribute_id = ((message.get("MessageAttributes") or {}).get("job_id") or {}).get("StringValue")
    return Parked(
        place=DLQ,
        key=str(message["MessageId"]),
        job_id=envelope.job_id if envelope else attribute_id,
        reason=DLQ_REASON,
        state=State.MOVABLE if envelope else State.POISON,
        body=body.encode("utf-8"),
        parked_at=_from_millis(attributes.get("SentTimestamp")),
        problem=problem,
    )


def from_failed_job_message(message: Mapping[str, Any]) -> Parked:
    """A failed-jobs capture message: its body is an EventBridge ``Batch Job State Change``."""
    key = str(message["MessageId"])
    sent = _from_millis((message.get("Attributes") or {}).get("SentTimestamp"))
    try:
        event = json.loads(str(message.get("Body", "")))
        if not isinstance(event, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        return Parked(
            FAILED_JOBS, key, None, "not a Batch Job State Change event", State.NO_BODY, None,
            sent, problem=f"the record is not an EventBridge event ({error}): no message body",
        )  # fmt: skip
    return from_failed_job_event(key, event, sent)


def failed_job_reason(detail: Mapping[str, Any]) -> str:
    """The last attempt's exit status (read as a worker exit) and the status reasons AWS Batch
    gives for the attempt and the job."""
    attempts = detail.get("attempts") or []
    last: Mapping[str, Any] = attempts[-1] if attempts and isinstance(attempts[-1], dict) else {}
    container: Mapping[str, Any] = last.get("container") or {}
    exit_code = container.get("exitCode")
    parts = [reason_for_exit(exit_code if isinstance(exit_code, int) else None)]
    if attempts:
        parts[0] += f" (attempt {len(attempts)})"
    for text in (container.get("reason"), last.get("statusReason"), detail.get("statusReason")):
        if isinstance(text, str) and text and text not in parts:
            parts.append(text)
    return "; ".join(parts)


def from_failed_job_event(key: str, event: Mapping[str, Any], sent: datetime | None) -> Parked:
    detail: Mapping[str, Any] = event.get("detail") or {}
    batch_job_id = detail.get("jobId")
    reason = failed_job_reason(detail)
    parked_at = _event_time(event) or _from_millis(detail.get("stoppedAt")) or sent
    environment = (detail.get("container") or {}).get("environment") or []
    values = {
        str(item.get("name")): item.get("value")
        for item in environment
        if isinstance(item, dict) and "name" in item
    }
    body = values.get(env.JOB_MESSAGE)
    if not isinstance(body, str):
        return Parked(
            FAILED_JOBS, key, None, reason, State.NO_BODY, None, parked_at,
            problem=(
                f"the record holds no message body: detail.container.environment has no "
                f"{env.JOB_MESSAGE}; look the job up in the producer's logs by Batch job id"
            ),
            batch_job_id=str(batch_job_id) if batch_job_id else None,
        )  # fmt: skip
    envelope, problem = _envelope(body)
    return Parked(
        place=FAILED_JOBS,
        key=key,
        job_id=envelope.job_id if envelope else None,
        reason=reason,
        state=State.MOVABLE if envelope else State.POISON,
        body=body.encode("utf-8"),
        parked_at=parked_at,
        problem=problem,
        batch_job_id=str(batch_job_id) if batch_job_id else None,
    )


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    text = event.get("time")
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def from_dead_letter_record(message: Message, *, passed: bool) -> Parked:
    """A record of the dead-letter topic; ``passed``: below the redrive group's committed offset,
    so ``redrive`` dealt with it (copied it back, or archived it if poison)."""
    headers = dict(message.headers() or [])
    reason = _text(headers.get(ERROR_HEADER)) or f"(no {ERROR_HEADER} header)"
    if source := _text(headers.get(SOURCE_HEADER)):
        reason += f" (from {source})"
    raw = message.value()
    value = raw.encode("utf-8") if isinstance(raw, str) else raw or b""
    envelope, problem = _envelope(value)
    if envelope is None:
        state = State.ARCHIVED if passed else State.POISON
    else:
        state = State.REDRIVEN if passed else State.MOVABLE
    kind, stamp = message.timestamp()
    return Parked(
        place=DEAD_LETTER_TOPIC,
        key=f"{message.partition()}/{message.offset()}",
        job_id=envelope.job_id if envelope else (_text(message.key()) or None),
        reason=reason,
        state=state,
        body=value,
        parked_at=_from_millis(stamp) if kind else None,
        problem=problem,
    )


# ---- SQS ---------------------------------------------------------------------------------------


def queue_url(ctx: StackAccess, name: str) -> str | None:
    try:
        with aws_call("sqs:GetQueueUrl"):
            return str(ctx.aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
    except NotFoundError:
        return None


def queue_count(ctx: StackAccess, url: str) -> int:
    """Visible + in flight + delayed (approximate, as SQS counts)."""
    with aws_call("sqs:GetQueueAttributes"):
        attributes = ctx.aws.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    return sum(int(v) for v in attributes.values())


def queue_arn(ctx: StackAccess, url: str) -> str:
    with aws_call("sqs:GetQueueAttributes"):
        attributes = ctx.aws.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )["Attributes"]
    return str(attributes["QueueArn"])


class SqsHold:
    """Messages received from one queue and held invisible until released or deleted.

    ``receive()`` returns the next batch of messages not seen before (a message seen again, after
    its visibility ran out, is held again under its new receipt handle and not returned twice);
    leaving the ``with`` block makes every message still held visible again at once.
    """

    def __init__(
        self, ctx: StackAccess, url: str, *, visibility: int = SCAN_VISIBILITY_SECONDS
    ) -> None:
        self._sqs = ctx.aws.client("sqs")
        self.url = url
        self.visibility = visibility
        """Seconds a received message stays invisible (until released)."""
        self._held: dict[str, str] = {}
        """message id -> receipt handle"""
        self._seen: set[str] = set()
        self.not_released = 0
        """Messages a release could not make visible again: they stay invisible until their
        visibility timeout ends."""

    def __enter__(self) -> SqsHold:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release_all()

    def receive(self) -> list[dict[str, Any]]:
        """The next unseen messages; an empty list once a long poll returns nothing new."""
        while True:
            with aws_call("sqs:ReceiveMessage"):
                found = self._sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=SQS_BATCH,
                    WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                    VisibilityTimeout=self.visibility,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            if not found:
                return []
            fresh: list[dict[str, Any]] = []
            for message in found:
                message_id = str(message["MessageId"])
                self._held[message_id] = str(message["ReceiptHandle"])
                if message_id not in self._seen:
                    self._seen.add(message_id)
                    fresh.append(message)
            if fresh:
                return fresh

    def read(self, limit: int, *, expected: int | None = None) -> list[dict[str, Any]]:
        """Every message of the queue, up to ``limit`` (held until release). With ``expected``
        (the queue's approximate count) the scan stops once it has read that many instead of
        waiting for an empty long poll."""
        messages: list[dict[str, Any]] = []
        stop = limit if expected is None else min(limit, expected)
        while len(messages) < stop:
            batch = self.receive()
            if not batch:
                break
            messages += batch
        return messages[:limit] if len(messages) > limit else messages

    def delete(self, message_id: str) -> None:
        receipt = self._held.pop(message_id)
        with aws_call("sqs:DeleteMessage"):
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def release_all(self) -> None:
        """Make every held message visible again; count in ``not_released`` (and log) those
        that stay invisible: the whole call failed, or SQS failed some entries, which it
        reports in the answer's ``Failed`` list with HTTP 200."""
        held, self._held = list(self._held.items()), {}
        for start in range(0, len(held), SQS_BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for i, (_, receipt) in enumerate(held[start : start + SQS_BATCH])
            ]
            try:
                with aws_call("sqs:ChangeMessageVisibilityBatch"):
                    answer = self._sqs.change_message_visibility_batch(
                        QueueUrl=self.url, Entries=entries
                    )
            except Exception as error:  # released anyway when the visibility timeout ends
                self._not_released(len(entries), str(error))
                continue
            failed = answer.get("Failed", [])
            if failed:
                reasons = sorted({f"{f.get('Code')}: {f.get('Message', '')}" for f in failed})
                self._not_released(len(failed), "; ".join(reasons))

    def _not_released(self, count: int, reason: str) -> None:
        self.not_released += count
        log.warning(
            "could not make %d message(s) of %s visible again (%s); they reappear within %d s",
            count,
            self.url,
            reason,
            self.visibility,
        )


# ---- Kafka -------------------------------------------------------------------------------------


def kafka_client_config(routing: Routing, region: str, group: str) -> dict[str, Any]:
    if routing.bootstrap_brokers is None:
        raise CannotTellError(f"the routing document of phase {routing.phase} names no brokers")
    return consumer_config(
        routing.bootstrap_brokers,
        group,
        kafka_auth=routing.kafka_auth,
        region=region,
        extra={"logger": kafka_logger(), "enable.partition.eof": False},
    )


class DeadLetterTopicReader:
    """Reads a topic from the redrive group's committed offsets (or from the beginning) to its
    end, assigned to every partition: no group membership, no commit unless ``commit`` is
    called (by ``redrive``).

    The end: a poll that returns nothing for ``idle`` seconds, or, once every partition has
    reached the high watermark read at the start, for ``settle`` seconds (Tansu reports high
    watermarks below the real end, so the watermark alone never ends a read)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        *,
        idle: float = KAFKA_IDLE_SECONDS,
        settle: float | None = None,
        timeout: float | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self._idle = idle
        self._settle = KAFKA_SETTLE_SECONDS if settle is None else settle
        self._timeout = timeout if timeout is not None else max(2.0, 2 * idle)
        """For metadata, watermarks and offsets (an unreachable broker costs this long)."""
        self._consumer: Consumer = Consumer(dict(config))

    def __enter__(self) -> DeadLetterTopicReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def partitions(self) -> list[int] | None:
        """The topic's partitions; None when the topic does not exist."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            metadata = self._consumer.list_topics(self.topic, timeout=self._timeout)
        except KafkaException as error:
            raise CannotTellError(f"cannot reach the Kafka brokers: {error}") from None
        found = metadata.topics.get(self.topic)
        if found is None or (
            found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            return None
        if found.error is not None:
            raise CannotTellError(f"cannot describe topic {self.topic}: {found.error}")
        return sorted(found.partitions)

    def committed(self, partitions: Sequence[int]) -> dict[int, int]:
        """The redrive group's committed offset per partition (partitions without one left out)."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            found = self._consumer.committed(
                [TopicPartition(self.topic, p) for p in partitions], timeout=self._timeout
            )
        except KafkaException as error:
            raise CannotTellError(f"cannot read the redrive group's offsets: {error}") from None
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def records(self, partitions: Sequence[int], start: Mapping[int, int]) -> Iterator[Message]:
        """Every record from ``start`` (per partition; the beginning where absent) to the end."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

        position: dict[int, int] = {}
        high: dict[int, int] = {}
        try:
            for p in partitions:
                low, high[p] = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self._timeout, cached=False
                )
                position[p] = max(start.get(p, low), low)
            self._consumer.assign(
                [TopicPartition(self.topic, p, start.get(p, OFFSET_BEGINNING)) for p in partitions]
            )
        except KafkaException as error:
            raise CannotTellError(f"cannot read topic {self.topic}: {error}") from None
        while True:
            at_end = all(position[p] >= high[p] for p in partitions)
            message = self._consumer.poll(self._settle if at_end else self._idle)
            if message is None:
                return
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise CannotTellError(f"cannot read topic {self.topic}: {error}")
            position[message.partition() or 0] = (message.offset() or 0) + 1
            yield message

    def commit(self, partition: int, next_offset: int) -> None:
        """Record in the redrive group that everything below ``next_offset`` was dealt with."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, partition, next_offset)], asynchronous=False
            )
        except KafkaException as error:
            raise CannotTellError(f"cannot commit the redrive group's offset: {error}") from None


def read_dead_letter_topic(
    config: Mapping[str, Any], topic: str, *, limit: int, idle: float = KAFKA_IDLE_SECONDS
) -> tuple[list[Parked], bool] | None:
    """Every record of the dead-letter topic (up to ``limit``), each marked redriven (archived,
    if poison) when it is below the redrive group's committed offset; None when the topic does
    not exist. The flag says whether the end of the topic was reached."""
    with DeadLetterTopicReader(config, topic, idle=idle) as reader:
        partitions = reader.partitions()
        if partitions is None:
            return None
        committed = reader.committed(partitions)
        found: list[Parked] = []
        for message in reader.records(partitions, {}):
            if len(found) >= limit:
                return found, False
            below = (message.offset() or 0) < committed.get(message.partition() or 0, 0)
            found.append(from_dead_letter_record(message, passed=below))
        return found, True
