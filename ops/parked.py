"""``jobstream parked --stack S``: what is parked in each dead-letter place, consuming nothing.

Per place (the SQS DLQ, the failed-jobs capture, the Kafka dead-letter topic): how many messages,
the oldest, how many ``redrive`` can put back, how many cannot (poison, no message body), and a
sample of job ids with their reasons. A place the phase in force does not have (the DLQ in phase
5, the dead-letter topic in phase 1) holds nothing; a place that cannot be read is cannot-tell,
with the reason. Exit 0 when nothing is parked anywhere; 1 when something is, or a place cannot
be read.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jobstream.contract.routing import Routing
from ops.arguments import kafka_timeout_seconds, positive_int
from ops.aws_clients import EXIT_CHECK_FAILED, EXIT_OK, CannotTellError
from ops.dead_letters import (
    DEAD_LETTER_TOPIC,
    DLQ,
    FAILED_JOBS,
    KAFKA_IDLE_SECONDS,
    PLACE_TITLES,
    SCAN_VISIBILITY_SECONDS,
    Parked,
    SqsHold,
    State,
    from_dlq_message,
    from_failed_job_message,
    kafka_client_config,
    queue_count,
    queue_url,
    read_dead_letter_topic,
)
from ops.errors import handles_errors
from ops.live import (
    LiveStack,
    add_stack_arguments,
    open_live_stack,
    read_routing,
)
from ops.report import console, fmt_int, print_json

DEFAULT_SAMPLE = 10
DEFAULT_LIMIT = 1000


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "parked",
        help="list what is parked in the DLQ, the failed-jobs capture and the dead-letter topic",
        description=(
            "Show, per dead-letter place, how many jobs are parked, the oldest, and a sample of "
            "job ids with their reasons. Consumes nothing: SQS messages are made visible again "
            "as soon as they are read; the Kafka topic is read without a consumer group."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--sample",
        type=positive_int,
        default=DEFAULT_SAMPLE,
        help=f"jobs listed per place (default {DEFAULT_SAMPLE})",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        help=f"messages read per place for the oldest and the reasons (default {DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--kafka-timeout",
        type=kafka_timeout_seconds,
        default=KAFKA_IDLE_SECONDS,
        help=f"seconds without a record that end the topic read (default {KAFKA_IDLE_SECONDS:g})",
    )
    parser.set_defaults(handler=run)


@handles_errors
def run(args: argparse.Namespace) -> int:
    ctx = open_live_stack(args)
    routing = read_routing(ctx)
    places = collect(ctx, routing, limit=args.limit, kafka_timeout=args.kafka_timeout)
    parked = sum(p.get("count", 0) for p in places)
    unreadable = [p["place"] for p in places if "cannot_tell" in p]
    code = EXIT_OK if not parked and not unreadable else EXIT_CHECK_FAILED
    if args.json:
        print_json(
            {
                "command": "parked",
                "stack": ctx.stack,
                "region": ctx.aws.region,
                "phase": routing.phase,
                "places": [_trim(p, args.sample) for p in places],
                "parked": parked,
                "cannot_tell": unreadable,
                "exit_code": code,
            }
        )
        return code
    _print(ctx, routing, places, args.sample)
    return code


def collect(
    ctx: LiveStack, routing: Routing, *, limit: int, kafka_timeout: float
) -> list[dict[str, Any]]:
    names = ctx.names
    return [
        _place(DLQ, names.dead_letter_queue, lambda: _sqs_place(ctx, names.dead_letter_queue, limit, from_dlq_message)),
        _place(
            FAILED_JOBS,
            names.failed_jobs_queue,
            lambda: _sqs_place(ctx, names.failed_jobs_queue, limit, from_failed_job_message),
        ),
        _place(
            DEAD_LETTER_TOPIC,
            routing.dead_letter_topic or "(none)",
            lambda: _topic_place(ctx, routing, limit, kafka_timeout),
        ),
    ]  # fmt: skip


def _place(place: str, name: str, read: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    head: dict[str, Any] = {"place": place, "title": PLACE_TITLES[place], "name": name}
    try:
        found = read()
    except CannotTellError as why:
        return {**head, "cannot_tell": why.reason}
    if found is None:
        return {**head, "exists": False, "count": 0}
    return {**head, "exists": True, **found}


def _sqs_place(
    ctx: LiveStack, name: str, limit: int, parse: Callable[[dict[str, Any]], Parked]
) -> dict[str, Any] | None:
    url = queue_url(ctx, name)
    if url is None:
        return None
    count = queue_count(ctx, url)
    with SqsHold(ctx, url) as hold:
        messages = hold.read(limit, expected=count)
    items = [parse(m) for m in messages]
    summary = _summary(ctx.now, items, count=max(count, len(items)), complete=len(items) >= count)
    # Messages SQS did not make visible again: a redrive within their visibility would miss them.
    summary["still_invisible"] = hold.not_released
    return summary


def _topic_place(
    ctx: LiveStack, routing: Routing, limit: int, timeout: float
) -> dict[str, Any] | None:
    topic = routing.dead_letter_topic
    if topic is None:
        return None
    config = kafka_client_config(routing, ctx.aws.region, ctx.names.redrive_group)
    found = read_dead_letter_topic(config, topic, limit=limit, idle=timeout)
    if found is None:
        return None
    records, complete = found
    waiting = [r for r in records if r.state not in (State.REDRIVEN, State.ARCHIVED)]
    summary = _summary(ctx.now, waiting, count=len(waiting), complete=complete)
    summary["redriven"] = sum(1 for r in records if r.state is State.REDRIVEN)
    summary["archived"] = sum(1 for r in records if r.state is State.ARCHIVED)
    summary["records"] = len(records)
    return summary


def _summary(now: datetime, items: list[Parked], *, count: int, complete: bool) -> dict[str, Any]:
    dated = [i for i in items if i.parked_at is not None]
    oldest = min(dated, key=lambda i: i.parked_at or now) if dated else None
    states = Counter(i.state.value for i in items)
    return {
        "count": count,
        "read": len(items),
        "complete": complete,
        "oldest": None
        if oldest is None or oldest.parked_at is None
        else oldest.parked_at.isoformat(),
        "oldest_age_seconds": None if oldest is None else oldest.age_seconds(now),
        "movable": states.get(State.MOVABLE.value, 0),
        "poison": states.get(State.POISON.value, 0),
        "no_body": states.get(State.NO_BODY.value, 0),
        "reasons": dict(Counter(i.reason for i in items).most_common()),
        "jobs": [i.to_json(now) for i in sorted(items, key=lambda i: i.parked_at or now)],
    }


def _trim(place: dict[str, Any], sample: int) -> dict[str, Any]:
    if "jobs" not in place:
        return place
    return {**place, "jobs": place["jobs"][:sample]}


# ---- the table ---------------------------------------------------------------------------------


def _print(ctx: LiveStack, routing: Routing, places: list[dict[str, Any]], sample: int) -> None:
    from rich.table import Table

    out = console()
    table = Table(
        title=f"parked: stack {ctx.stack} ({ctx.aws.region}), phase {routing.phase}",
        title_justify="left",
    )
    for column in ("place", "name", "parked", "oldest", "movable", "poison", "no body"):
        table.add_column(column)
    for place in places:
        if "cannot_tell" in place:
            table.add_row(
                place["title"], place["name"], f"[yellow]cannot tell: {place['cannot_tell']}[/]",
                "", "", "", "",
            )  # fmt: skip
            continue
        if not place.get("exists"):
            table.add_row(place["title"], place["name"], "does not exist", "", "", "", "")
            continue
        count = fmt_int(place["count"]) + ("" if place["complete"] else f" ({place['read']} read)")
        for passed in ("redriven", "archived"):
            if place.get(passed):
                count += f" (+{place[passed]} {passed})"
        table.add_row(
            place["title"], place["name"], count, _age(place["oldest_age_seconds"]),
            fmt_int(place["movable"]), fmt_int(place["poison"]), fmt_int(place["no_body"]),
        )  # fmt: skip
    out.print(table)
    for place in places:
        if place.get("still_invisible"):
            out.print(
                f"[yellow]{place['still_invisible']} message(s) of {place['name']} could not be "
                f"made visible again: they reappear within {SCAN_VISIBILITY_SECONDS} s, and a "
                "redrive before then does not see them[/]"
            )
    jobs = Table(title="parked jobs (oldest first)", title_justify="left")
    for column in ("place", "job id", "state", "age", "reason"):
        jobs.add_column(column, overflow="fold")
    rows = 0
    for place in places:
        for job in place.get("jobs", [])[:sample]:
            rows += 1
            reason = job["reason"] + (f" [{job['problem']}]" if job["problem"] else "")
            job_id = job["job_id"] or (
                f"(Batch job {job['batch_job_id']})" if job["batch_job_id"] else "(unknown)"
            )
            jobs.add_row(place["title"], job_id, job["state"], _age(job["age_seconds"]), reason)
    if rows:
        out.print(jobs)
        out.print(
            "put them back with `jobstream redrive --stack "
            f"{ctx.stack} --source dlq|failed-jobs|dead-letter-topic` once the cause is fixed "
            "(poison and no-body messages are never moved)"
        )
    elif not any("cannot_tell" in p for p in places):
        out.print("[green]nothing is parked[/]")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
