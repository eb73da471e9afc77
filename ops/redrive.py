"""``jobstream redrive --stack S --source dlq|failed-jobs|dead-letter-topic``: put parked jobs
back on the route the phase in force consumes, once their cause is fixed.

Where they go (the routing document): the SQS job queue in phases 1-4 while it exists (in phase
4 the SQS path still applies what reaches it, draining), otherwise (phase 5) the Kafka jobs
topic. The envelope is sent exactly as it was parked (same job id, same bytes), so the
idempotency ledger still applies each job once, however many copies a crash or a rerun makes.

How:
- ``dlq`` to the job queue, every message, none of them poison: SQS's own message-move task
  (``StartMessageMoveTask``, DLQ -> the queue it serves). Where the endpoint does not offer it
  (moto does not implement it), or a message is poison, or ``--job-id`` selects, the copy below.
- copy (SQS places): one message at a time, received and held invisible; sent to the target;
  deleted from the place only once the target accepted the copy. Interrupted, the messages not
  moved yet are made visible again at once, and a rerun moves only what is still parked (one
  interrupted between the copy and the delete is sent again: a duplicate the ledger absorbs).
- copy (dead-letter topic): records are not deleted from Kafka; the progress is the committed
  offset of the command's own consumer group (``jobstream-<stack>-redrive``), committed after
  each copy was accepted (or poison archived), so a rerun continues after the last record dealt
  with. A record left behind (not selected by ``--job-id``, poison without ``--archive-poison``)
  stops the offset in its partition: the records of the plan after it are moved, and moved
  again by a later redrive (the ledger applies them once), so the record left stays in view
  until dealt with.
- a message without a usable envelope (poison, or a failed-jobs record without its message
  body) is never moved: it is listed with the reason. Once inspected, ``--archive-poison PATH``
  takes such messages out of the place, each written first (body, reason, place, ids) as one
  JSON line appended to PATH, so the gates that need the place empty can pass and nothing is
  silently gone.

``--dry-run`` lists what would move; otherwise the command asks first, unless ``--yes`` (it
refuses to ask when stdin is not a terminal: exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobstream.contract.env import MAX_JOB_MESSAGE_CHARS
from jobstream.contract.routing import Routing
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.publishers import JOB_ID_ATTRIBUTE
from ops.arguments import kafka_timeout_seconds, positive_int
from ops.aws_clients import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CannotTellError,
    NotFoundError,
    OpsError,
    ResourceMissingError,
    UsageError,
    aws_call,
)
from ops.dead_letters import (
    DEAD_LETTER_TOPIC,
    DLQ,
    KAFKA_IDLE_SECONDS,
    PLACE_TITLES,
    PLACES,
    DeadLetterTopicReader,
    Parked,
    SqsHold,
    State,
    from_dead_letter_record,
    from_dlq_message,
    from_failed_job_message,
    kafka_client_config,
    queue_arn,
    queue_url,
)
from ops.errors import EXIT_INTERRUPTED, handles_errors
from ops.kafka_log import kafka_logger
from ops.live import (
    LiveStack,
    add_stack_arguments,
    open_live_stack,
    read_routing,
)
from ops.report import console, print_json

DEFAULT_LIMIT = 10_000
MOVE_VISIBILITY_SECONDS = 300
"""How long a message being copied stays invisible at most (released at the end of the run)."""
PROGRESS_FROM = 20
"""Moves of at least this many messages show a progress bar (on a terminal, without --json)."""
MOVE_TASK_POLL_SECONDS = 1.0
TABLE_ROWS = 50
"""Jobs listed by name in the table (``--json`` lists them all)."""
KAFKA_DELIVERY_TIMEOUT_SECONDS = 30.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "redrive",
        help="put parked jobs back on the route the phase in force consumes",
        description=(
            "Move parked jobs from a dead-letter place back to the SQS job queue (phases 1-4, "
            "while it exists) or the Kafka jobs topic (phase 5), with their envelope unchanged, "
            "so the idempotency ledger still applies each job once."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_arguments(parser)
    parser.add_argument("--source", required=True, choices=PLACES, help="the place to empty")
    parser.add_argument(
        "--job-id",
        action="append",
        default=[],
        metavar="ID",
        help="move only this job (repeatable); default: every movable message",
    )
    parser.add_argument(
        "--archive-poison",
        metavar="PATH",
        help=(
            "take poison and no-body messages out of the place after appending each (body, "
            "reason, ids) as a JSON line to PATH; default: leave them parked"
        ),
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would move; move nothing")
    parser.add_argument("--yes", action="store_true", help="move without asking")
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        help=f"messages read from the place at most (default {DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--kafka-timeout",
        type=kafka_timeout_seconds,
        default=KAFKA_IDLE_SECONDS,
        help=f"seconds without a record that end a topic read (default {KAFKA_IDLE_SECONDS:g})",
    )
    parser.set_defaults(handler=run)


# ---- where the jobs go ----------------------------------------------------------------------


class NotConfirmedError(OpsError):
    """The operator answered no (exit 1)."""

    exit_code = EXIT_CHECK_FAILED
    kind = "not-confirmed"


class CopyRefusedError(Exception):
    """The target did not accept a copy (the parked message stays where it is)."""


class Target:
    route: str
    name: str
    title: str
    arn: str | None = None

    def refuses(self, item: Parked) -> str:
        """Why this route cannot carry the message (empty: it can)."""
        return ""

    def send(self, item: Parked) -> None: ...

    def close(self) -> None:
        pass

    def to_json(self) -> dict[str, Any]:
        return {"route": self.route, "name": self.name}


class SqsTarget(Target):
    route = "sqs"

    def __init__(self, ctx: LiveStack, url: str, arn: str) -> None:
        self._sqs = ctx.aws.client("sqs")
        self.name = url
        self.arn = arn
        self.title = f"SQS job queue {url.rsplit('/', 1)[-1]}"

    def refuses(self, item: Parked) -> str:
        length = len((item.body or b"").decode("utf-8"))
        if length > MAX_JOB_MESSAGE_CHARS:
            return (
                f"envelope of {length} characters exceeds the SQS route's {MAX_JOB_MESSAGE_CHARS} "
                "(AWS Batch would fail the job at launch)"
            )
        return ""

    def send(self, item: Parked) -> None:
        assert item.body is not None and item.job_id is not None
        try:
            with aws_call("sqs:SendMessage"):
                self._sqs.send_message(
                    QueueUrl=self.name,
                    MessageBody=item.body.decode("utf-8"),
                    MessageAttributes={
                        JOB_ID_ATTRIBUTE: {"DataType": "String", "StringValue": item.job_id}
                    },
                )
        except (CannotTellError, NotFoundError) as error:
            raise CopyRefusedError(
                f"the job queue did not accept job {item.job_id}: {error}"
            ) from None


class KafkaTarget(Target):
    route = "kafka"

    def __init__(self, routing: Routing, region: str, *, timeout: float) -> None:

        from confluent_kafka import Producer

        assert routing.topic is not None and routing.bootstrap_brokers is not None
        self.name = routing.topic
        self.title = f"Kafka topic {routing.topic}"
        self._timeout = timeout
        self._producer = Producer(
            producer_config(
                routing.bootstrap_brokers,
                kafka_auth=routing.kafka_auth,
                region=region,
                delivery_timeout_ms=int(timeout * 1000),
                linger_ms=0,
                extra={"logger": kafka_logger()},
            )
        )

    def send(self, item: Parked) -> None:
        from confluent_kafka import KafkaException

        assert item.body is not None and item.job_id is not None
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            self._producer.produce(
                self.name,
                key=item.job_id.encode("utf-8"),
                value=item.body,
                on_delivery=on_delivery,
            )
            left = self._producer.flush(self._timeout + 5)
        except (KafkaException, BufferError) as error:
            raise CopyRefusedError(f"Kafka did not accept job {item.job_id}: {error}") from None
        if left or errors:
            raise CopyRefusedError(
                f"Kafka did not accept job {item.job_id}: {'; '.join(errors) or 'delivery timed out'}"
            )

    def close(self) -> None:
        self._producer.flush(5)


def resolve_target(ctx: LiveStack, routing: Routing, *, kafka_timeout: float) -> Target:
    """The SQS job queue while it exists (phases 1-4), else the Kafka topic (phase 5)."""
    if routing.queue_url is not None:
        try:
            arn = queue_arn(ctx, routing.queue_url)
        except NotFoundError:
            arn = None
        if arn is not None:
            return SqsTarget(ctx, routing.queue_url, arn)
        if routing.topic is None or routing.bootstrap_brokers is None or routing.phase < 4:
            raise ResourceMissingError(
                f"the job queue {routing.queue_url} that phase {routing.phase} consumes does not "
                "exist: nowhere to put the jobs back",
                hint="check the stack with `jobstream status`",
            )
    if routing.topic is None or routing.bootstrap_brokers is None:
        raise ResourceMissingError(
            f"the routing document of phase {routing.phase} names neither a job queue nor a "
            "Kafka topic with brokers: nowhere to put the jobs back"
        )
    return KafkaTarget(routing, ctx.aws.region, timeout=kafka_timeout)


# ---- what moves -----------------------------------------------------------------------------


@dataclass
class Plan:
    source: str
    source_name: str
    target: Target
    to_move: list[Parked] = field(default_factory=list)
    left: list[tuple[Parked, str]] = field(default_factory=list)
    not_parked: list[str] = field(default_factory=list)
    to_archive: list[Parked] = field(default_factory=list)
    method: str = "copy"
    notes: list[str] = field(default_factory=list)


def select(
    source: str,
    source_name: str,
    items: Sequence[Parked],
    target: Target,
    job_ids: Sequence[str],
    *,
    archive: bool = False,
) -> Plan:
    plan = Plan(source, source_name, target)
    wanted = set(job_ids)
    for item in items:
        if wanted and item.job_id not in wanted:
            continue
        if archive and item.state in (State.POISON, State.NO_BODY):
            plan.to_archive.append(item)
        elif not item.movable:
            plan.left.append((item, item.problem or item.state.value))
        elif why := target.refuses(item):
            plan.left.append((item, why))
        else:
            plan.to_move.append(item)
    found = {i.job_id for i in items}
    plan.not_parked = [j for j in job_ids if j not in found]
    return plan


@dataclass
class Outcome:
    moved: list[Parked] = field(default_factory=list)
    moved_again_later: list[Parked] = field(default_factory=list)
    archived_again_later: list[Parked] = field(default_factory=list)
    archived: list[Parked] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False


# ---- the command ----------------------------------------------------------------------------


@handles_errors
def run(args: argparse.Namespace) -> int:
    ctx = open_live_stack(args)
    routing = read_routing(ctx)
    source = _source(ctx, routing, args.source)
    target = resolve_target(ctx, routing, kafka_timeout=KAFKA_DELIVERY_TIMEOUT_SECONDS)
    try:
        read = source.read(args.limit, args.kafka_timeout)
        plan = select(
            args.source,
            source.name,
            read,
            target,
            args.job_id,
            archive=args.archive_poison is not None,
        )
        if (
            args.source == DLQ
            and target.route == "sqs"
            and not args.job_id
            and not plan.left
            and not plan.to_archive
            and len(read) < args.limit  # the task moves the whole DLQ: all of it was checked
        ):
            plan.method = "message-move-task"
        if plan.not_parked and len(read) >= args.limit:
            plan.notes.append(
                f"only the first {args.limit} messages of {source.name} were read (--limit): "
                "a job not found may be parked further in"
            )
        outcome = Outcome()
        if (plan.to_move or plan.to_archive) and not args.dry_run:
            if not args.yes:
                _confirm(plan)
            outcome = _move(ctx, source, plan, args)
    finally:
        target.close()
    code = _exit_code(plan, outcome)
    document = _document(ctx, routing, plan, outcome, dry_run=args.dry_run, code=code)
    if args.json:
        print_json(document)
    else:
        _print(plan, outcome, dry_run=args.dry_run)
    return code


def _exit_code(plan: Plan, outcome: Outcome) -> int:
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    # A --job-id that names nothing parked (a typo, a job already moved) must not read as done.
    return EXIT_CHECK_FAILED if outcome.error or plan.not_parked else EXIT_OK


def _confirm(plan: Plan) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            f"redrive would move {len(plan.to_move)} job(s) and asks first, but stdin is not a "
            "terminal",
            hint="pass --yes to move without asking, or --dry-run to list what would move",
        )
    from rich.console import Console
    from rich.prompt import Confirm

    question = (
        f"Move {len(plan.to_move)} job(s) from the {PLACE_TITLES[plan.source]} "
        f"{plan.source_name} to the {plan.target.title}"
        + (f", and archive and remove {len(plan.to_archive)} poison" if plan.to_archive else "")
        + "?"
    )
    if not Confirm.ask(question, console=Console(stderr=True), default=False):
        raise NotConfirmedError("not confirmed: nothing was moved")


def _move(ctx: LiveStack, source: Source, plan: Plan, args: argparse.Namespace) -> Outcome:
    outcome = Outcome()
    source.archive_to = args.archive_poison
    show = not args.json and console().is_terminal and len(plan.to_move) >= PROGRESS_FROM
    with _progress(len(plan.to_move), show) as advance:
        try:
            if plan.method == "message-move-task":
                try:
                    moved = _message_move_task(ctx, source, plan, advance)
                except _MoveTaskUnavailableError as why:
                    plan.method = "copy"
                    plan.notes.append(
                        f"StartMessageMoveTask is not available here ({why}); copied one message "
                        "at a time"
                    )
                else:
                    outcome.moved = list(plan.to_move) if moved >= len(plan.to_move) else []
                    if moved < len(plan.to_move):
                        outcome.error = (
                            f"the message-move task moved {moved} of {len(plan.to_move)} messages"
                        )
                    return outcome
            source.copy(plan, outcome, advance)
        except CopyRefusedError as error:
            outcome.error = str(error)
        except CannotTellError as why:
            outcome.error = why.reason
        except KeyboardInterrupt:
            outcome.interrupted = True
            plan.notes.append(
                "interrupted: the messages not moved yet are parked as before; rerun to continue"
            )
    return outcome


@contextlib.contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` moves a rich progress bar on stderr (only on a terminal)."""
    if not show:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("moving", total=total)
        yield lambda n: progress.update(task, advance=n)


# ---- the sources ----------------------------------------------------------------------------


class Source:
    name: str
    archive_to: str | None = None
    """Where poison and no-body messages of the plan are written before they leave the place."""

    def _archive(self, item: Parked, outcome: Outcome) -> None:
        import json
        from datetime import UTC, datetime

        assert self.archive_to is not None
        body = item.body.decode(errors="replace") if item.body is not None else None
        line = {
            "archived_at": datetime.now(UTC).isoformat(),
            "place": item.place,
            "source": self.name,
            "key": item.key,
            "job_id": item.job_id,
            "batch_job_id": item.batch_job_id,
            "state": item.state.value,
            "reason": item.reason,
            "problem": item.problem,
            "body": body,
        }
        with open(self.archive_to, "a") as archive:
            archive.write(json.dumps(line) + "\n")
            archive.flush()
        outcome.archived.append(item)

    def read(self, limit: int, kafka_timeout: float) -> list[Parked]: ...

    def copy(self, plan: Plan, outcome: Outcome, advance: Callable[[int], None]) -> None: ...


class SqsSource(Source):
    def __init__(
        self, ctx: LiveStack, name: str, url: str, parse: Callable[[dict[str, Any]], Parked]
    ) -> None:
        self._ctx = ctx
        self.name = name
        self.url = url
        self._parse = parse

    def read(self, limit: int, kafka_timeout: float) -> list[Parked]:
        with SqsHold(self._ctx, self.url) as hold:
            parked = [self._parse(m) for m in hold.read(limit)]
        if hold.not_released:
            # The copy receives them again: still invisible, they would be missed and reported
            # as no longer parked, the job not moved.
            raise CannotTellError(
                f"{hold.not_released} message(s) of {self.name} read for the plan could not be "
                f"made visible again (sqs:ChangeMessageVisibilityBatch); they reappear within "
                f"{hold.visibility} s: run redrive again then (nothing was moved)"
            )
        return parked

    def copy(self, plan: Plan, outcome: Outcome, advance: Callable[[int], None]) -> None:
        """Receive, send, delete: one message at a time, only the messages of the plan (poison
        of the plan: archive, delete)."""
        remaining = {item.key for item in plan.to_move}
        archive = {item.key for item in plan.to_archive}
        remaining |= archive
        with SqsHold(self._ctx, self.url, visibility=MOVE_VISIBILITY_SECONDS) as hold:
            while remaining:
                batch = hold.receive()
                if not batch:
                    break
                for message in batch:
                    item = self._parse(message)
                    if item.key not in remaining:
                        continue  # not in the confirmed plan: held, released at the end
                    if item.key in archive:
                        self._archive(item, outcome)
                        hold.delete(item.key)
                        remaining.discard(item.key)
                        continue
                    plan.target.send(item)
                    try:
                        hold.delete(item.key)
                    except BaseException:
                        plan.notes.append(
                            f"job {item.job_id} was copied to the {plan.target.title} but is still "
                            "parked: a rerun copies it again (the ledger applies it once)"
                        )
                        raise
                    remaining.discard(item.key)
                    outcome.moved.append(item)
                    advance(1)
        if remaining:
            plan.notes.append(
                f"{len(remaining)} message(s) of the plan were no longer in {self.name}"
            )
        if hold.not_released:
            plan.notes.append(
                f"{hold.not_released} message(s) of {self.name} left in place could not be made "
                f"visible again: they reappear within {hold.visibility} s"
            )


class TopicSource(Source):
    def __init__(self, ctx: LiveStack, routing: Routing, topic: str) -> None:
        self._ctx = ctx
        self._routing = routing
        self.name = topic
        self._timeout = KAFKA_IDLE_SECONDS

    def _reader(self) -> DeadLetterTopicReader:
        config = kafka_client_config(
            self._routing, self._ctx.aws.region, self._ctx.names.redrive_group
        )
        return DeadLetterTopicReader(config, self.name, idle=self._timeout)

    def read(self, limit: int, kafka_timeout: float) -> list[Parked]:
        """The records after the redrive group's committed offsets (not redriven yet)."""
        self._timeout = kafka_timeout
        with self._reader() as reader:
            partitions = reader.partitions()
            if partitions is None:
                raise ResourceMissingError(f"the dead-letter topic {self.name} does not exist")
            found: list[Parked] = []
            for message in reader.records(partitions, reader.committed(partitions)):
                found.append(from_dead_letter_record(message, passed=False))
                if len(found) >= limit:
                    break
            return found

    def copy(self, plan: Plan, outcome: Outcome, advance: Callable[[int], None]) -> None:
        """Send each record of the plan (or archive it: poison with ``--archive-poison``), then
        commit past it while the partition's records so far were all moved or archived; a record
        left behind (poison not archived included) stops the offset."""
        wanted = {item.key for item in plan.to_move}
        archive = {item.key for item in plan.to_archive}
        with self._reader() as reader:
            partitions = reader.partitions() or []
            contiguous = dict.fromkeys(partitions, True)
            for message in reader.records(partitions, reader.committed(partitions)):
                if not wanted and not archive:
                    break
                item = from_dead_letter_record(message, passed=False)
                partition, next_offset = message.partition() or 0, (message.offset() or 0) + 1
                if item.key in archive:
                    self._archive(item, outcome)
                    archive.discard(item.key)
                    if contiguous[partition]:
                        reader.commit(partition, next_offset)
                    else:
                        outcome.archived_again_later.append(item)
                elif item.key in wanted:
                    plan.target.send(item)
                    wanted.discard(item.key)
                    outcome.moved.append(item)
                    if contiguous[partition]:
                        reader.commit(partition, next_offset)
                    else:
                        outcome.moved_again_later.append(item)
                    advance(1)
                else:
                    # Left behind (poison without --archive-poison included): the offset stops,
                    # so a later redrive still sees it and --archive-poison can take it out.
                    contiguous[partition] = False
        if wanted:
            plan.notes.append(f"{len(wanted)} record(s) of the plan were not found again")
        if outcome.moved_again_later:
            plan.notes.append(
                f"{len(outcome.moved_again_later)} job(s) were moved past a record that stays "
                "parked: a later redrive moves them again (the ledger applies each job once)"
            )
        if outcome.archived_again_later:
            plan.notes.append(
                f"{len(outcome.archived_again_later)} poison record(s) were archived past a "
                "record that stays parked: they stay on the topic's list until the offset passes "
                "them, and a later --archive-poison writes them to the archive again"
            )


def _source(ctx: LiveStack, routing: Routing, place: str) -> Source:
    names = ctx.names
    if place == DEAD_LETTER_TOPIC:
        if routing.dead_letter_topic is None:
            raise ResourceMissingError(
                f"phase {routing.phase} has no Kafka dead-letter topic (the routing document "
                "names none)"
            )
        return TopicSource(ctx, routing, routing.dead_letter_topic)
    name, parse = (
        (names.dead_letter_queue, from_dlq_message)
        if place == DLQ
        else (names.failed_jobs_queue, from_failed_job_message)
    )
    url = queue_url(ctx, name)
    if url is None:
        raise ResourceMissingError(
            f"the {PLACE_TITLES[place]} {name} does not exist in {ctx.aws.region}",
            hint="phase 5 removes the SQS path; check --region/--profile",
        )
    return SqsSource(ctx, name, url, parse)


# ---- SQS's message-move task ----------------------------------------------------------------


class _MoveTaskUnavailableError(Exception):
    """The endpoint does not run message-move tasks (before one was started)."""


def _message_move_task(
    ctx: LiveStack, source: Source, plan: Plan, advance: Callable[[int], None]
) -> int:
    """Move the whole DLQ back to the job queue with ``StartMessageMoveTask`` and follow it to
    its end; returns the messages moved. A task already running on the DLQ (an interrupted
    earlier run) is followed instead of starting another."""
    assert isinstance(source, SqsSource) and plan.target.arn is not None
    sqs = ctx.aws.client("sqs")
    dlq_arn = queue_arn(ctx, source.url)
    try:
        running = _latest_task(sqs, dlq_arn)
        if running is None or running.get("Status") != "RUNNING":
            with aws_call("sqs:StartMessageMoveTask"):
                sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=plan.target.arn)
        else:
            plan.notes.append("followed the message-move task already running on the DLQ")
    except CannotTellError as why:
        raise _MoveTaskUnavailableError(why.reason) from None
    shown = 0
    while True:
        with aws_call("sqs:ListMessageMoveTasks"):
            task = _latest_task(sqs, dlq_arn)
        if task is None:
            raise CannotTellError("the message-move task started but is not listed")
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if moved > shown:
            advance(moved - shown)
            shown = moved
        status = task.get("Status")
        if status == "COMPLETED":
            return moved
        if status in ("FAILED", "CANCELLED", "CANCELLING"):
            raise CannotTellError(
                f"the message-move task ended {status}: {task.get('FailureReason', 'no reason')} "
                f"after moving {moved} message(s)"
            )
        time.sleep(MOVE_TASK_POLL_SECONDS)


def _latest_task(sqs: Any, dlq_arn: str) -> Mapping[str, Any] | None:
    with aws_call("sqs:ListMessageMoveTasks"):
        results = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
    return results[0] if results else None


# ---- the report -----------------------------------------------------------------------------


def _document(
    ctx: LiveStack, routing: Routing, plan: Plan, outcome: Outcome, *, dry_run: bool, code: int
) -> dict[str, Any]:
    now = ctx.now
    return {
        "command": "redrive",
        "stack": ctx.stack,
        "region": ctx.aws.region,
        "phase": routing.phase,
        "source": plan.source,
        "source_name": plan.source_name,
        "target": plan.target.to_json(),
        "method": plan.method,
        "dry_run": dry_run,
        "selected": len(plan.to_move),
        "would_move": [i.to_json(now) for i in plan.to_move] if dry_run else [],
        "moved": [i.to_json(now) for i in outcome.moved],
        "left_parked": [{**i.to_json(now), "why": why} for i, why in plan.left],
        "not_parked": plan.not_parked,
        "moved_again_by_a_later_redrive": [i.job_id for i in outcome.moved_again_later],
        "archived_again_by_a_later_redrive": [i.key for i in outcome.archived_again_later],
        "archived": [i.to_json(now) for i in outcome.archived],
        "would_archive": [i.to_json(now) for i in plan.to_archive] if dry_run else [],
        "notes": plan.notes,
        "error": outcome.error,
        "interrupted": outcome.interrupted,
        "exit_code": code,
    }


def _print(plan: Plan, outcome: Outcome, *, dry_run: bool) -> None:
    from rich.table import Table

    out = console()
    where = f"{PLACE_TITLES[plan.source]} {plan.source_name} -> {plan.target.title}"
    rows = plan.to_move if dry_run else outcome.moved
    verb = "would move" if dry_run else "moved"
    table = Table(title=f"redrive: {where} ({plan.method})", title_justify="left")
    for column in ("job id", "state", "reason parked", "why it stays"):
        table.add_column(column, overflow="fold")
    for item in rows[:TABLE_ROWS]:
        table.add_row(item.job_id or "-", verb, item.reason, "")
    if len(rows) > TABLE_ROWS:
        table.add_row(f"... {len(rows) - TABLE_ROWS} more", verb, "(--json lists every job)", "")
    for item, why in plan.left:
        job = item.job_id or (f"(Batch job {item.batch_job_id})" if item.batch_job_id else "-")
        table.add_row(job, f"[yellow]stays ({item.state.value})[/]", item.reason, why)
    if rows or plan.left:
        out.print(table)
    for item in outcome.archived:
        out.print(f"archived and removed: {item.job_id or item.key} ({item.state.value})")
    for job_id in plan.not_parked:
        out.print(f"[yellow]{job_id}: not parked in {plan.source_name}[/]")
    for note in plan.notes:
        out.print(note)
    if outcome.error:
        out.print(f"[bold red]stopped: {outcome.error}[/] (moved {len(outcome.moved)})")
    elif dry_run:
        out.print(f"dry run: {len(plan.to_move)} job(s) would move; nothing was moved")
    elif not outcome.interrupted:
        out.print(f"[green]moved {len(outcome.moved)} job(s)[/]")
