"""``jobstream status --stack S``: the live state of a stack, read with boto3.

The phase in force (from the routing parameter), queue depth and age, DLQ, Batch jobs by state,
the pipe, the MSK cluster, the Kafka consumer service and its lag, verify parity, and alarms in
ALARM. Exit 0 when every resource the phase needs is there and no alarm fires; 1 otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from jobstream.contract.phases import ConsumerMode, ResourceGroup, Route, phase
from ops.arguments import positive_number
from ops.aws_clients import EXIT_CHECK_FAILED, EXIT_OK, CannotTellError, handles_errors
from ops.probes import (
    QueueDepth,
    StackContext,
    add_stack_arguments,
    alarms_in_alarm,
    batch_queue,
    db_instance_status,
    db_proxy_status,
    ecs_service,
    human_window,
    kafka_cluster,
    kafka_lag_metric,
    metric_latest,
    open_stack,
    pipe_state,
    queue_depth,
    read_routing,
    sqs_metric,
    verify_parity,
)
from ops.report import console, fmt_int, fmt_pct, key_value_table, print_json

T = TypeVar("T")
RECENT = timedelta(minutes=15)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show the live state of a stack: phase, queues, Batch jobs, MSK, lag, parity, alarms",
        description="Read the live AWS account and show where the stack stands.",
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--parity-window-hours",
        type=positive_number,
        default=24.0,
        help="window of the verify-parity figure (default 24)",
    )
    parser.set_defaults(handler=run)


class _Unknown:
    """A figure the account could not give (with the reason)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _read(probe: Callable[[], T]) -> T | _Unknown:
    try:
        return probe()
    except CannotTellError as why:
        return _Unknown(why.reason)


@handles_errors
def run(args: argparse.Namespace) -> int:
    ctx = open_stack(args)
    document, problems = collect(ctx, timedelta(hours=args.parity_window_hours))
    code = EXIT_OK if not problems else EXIT_CHECK_FAILED
    if args.json:
        print_json({**document, "problems": problems, "exit_code": code})
        return code
    out = console()
    out.print(key_value_table(f"status: stack {ctx.stack} ({ctx.aws.region})", _rows(document)))
    if problems:
        out.print("[bold red]problems:[/]")
        for problem in problems:
            out.print(f"  - {problem}")
    else:
        out.print("[green]no problems: every resource the phase needs is there, no alarm fires[/]")
    return code


def collect(ctx: StackContext, parity_window: timedelta) -> tuple[dict[str, Any], list[str]]:
    """Everything ``status`` shows, as one JSON-ready document, and the problems found."""
    routing = read_routing(ctx)
    current = phase(routing.phase)
    names = ctx.names
    problems: list[str] = []
    doc: dict[str, Any] = {
        "command": "status",
        "stack": ctx.stack,
        "region": ctx.aws.region,
        "phase": routing.phase,
        "phase_title": current.title,
        "publish_targets": list(routing.publish_targets),
        "consumer_modes": dict(routing.consumer_modes),
    }

    def need(group: ResourceGroup, what: str, present: bool) -> None:
        if current.has(group) and not present:
            problems.append(f"{what} does not exist, but phase {current.label} needs it")

    db_id = ctx.cfg.database.existing_instance_id or names.db_instance
    db = _read(lambda: db_instance_status(ctx, db_id))
    proxy = _read(lambda: db_proxy_status(ctx, names.db_proxy))
    doc["database"] = _value(db)
    doc["db_proxy"] = _value(proxy)
    need(ResourceGroup.DATABASE, f"database {db_id}", db is not None)
    need(ResourceGroup.DATABASE, f"RDS Proxy {names.db_proxy}", proxy is not None)

    places = (
        ("queue", names.job_queue, ResourceGroup.JOB_QUEUE),
        ("dlq", names.dead_letter_queue, ResourceGroup.JOB_QUEUE),
        ("failed_jobs", names.failed_jobs_queue, ResourceGroup.BATCH),
    )
    for key, queue, group in places:

        def depth_and_age(depth: QueueDepth, q: str = queue) -> dict[str, Any]:
            age = _read(
                lambda: metric_latest(
                    ctx, sqs_metric(q, "ApproximateAgeOfOldestMessage"), window=RECENT
                )
            )
            return {
                "visible": depth.visible,
                "in_flight": depth.in_flight,
                "delayed": depth.delayed,
                "oldest_age_seconds": None if age is None or isinstance(age, _Unknown) else age[1],
            }

        depth = _read(lambda q=queue: queue_depth(ctx, q))
        doc[key] = _entry(queue, depth, depth_and_age)
        need(group, f"SQS queue {queue}", depth is not None)
    for key, what in (("dlq", "DLQ"), ("failed_jobs", "failed-jobs capture")):
        parked = doc[key]
        if parked.get("exists") and (parked["visible"] + parked["in_flight"] + parked["delayed"]):
            problems.append(
                f"{what} {parked['name']} holds {parked['visible']} messages "
                "(`jobstream parked`, then `jobstream redrive`)"
            )

    jobs = _read(lambda: batch_queue(ctx, names.batch_job_queue))
    doc["batch"] = _entry(
        names.batch_job_queue,
        jobs,
        lambda j: {"state": j.state, "status": j.status, "jobs": dict(j.jobs)},
    )
    need(ResourceGroup.BATCH, f"Batch job queue {names.batch_job_queue}", jobs is not None)

    pipe = _read(lambda: pipe_state(ctx, names.pipe))
    doc["pipe"] = _entry(names.pipe, pipe, lambda p: {"desired": p.desired, "current": p.current})
    need(ResourceGroup.SQS_TRIGGER, f"pipe {names.pipe}", pipe is not None)

    cluster = _read(lambda: kafka_cluster(ctx, names.kafka_cluster))
    doc["kafka"] = _entry(names.kafka_cluster, cluster, lambda c: {"state": c.state})
    state = doc["kafka"].get("state")
    if current.has(ResourceGroup.KAFKA) and doc["kafka"].get("exists") and state != "ACTIVE":
        problems.append(f"MSK cluster {names.kafka_cluster} is {state}, not ACTIVE")
    need(ResourceGroup.KAFKA, f"MSK cluster {names.kafka_cluster}", cluster is not None)

    service = _read(lambda: ecs_service(ctx, names.ecs_cluster, names.ecs_service))
    doc["consumer_service"] = _entry(
        names.ecs_service,
        service,
        lambda s: {"status": s.status, "desired": s.desired, "running": s.running},
    )
    need(ResourceGroup.CONSUMER_SERVICE, f"ECS service {names.ecs_service}", service is not None)

    # The lag and the parity figures come from the Kafka consumer: where the phase runs none
    # (or not in verify mode), there is nothing to read, which is not a "cannot tell".
    kafka_mode = routing.mode(Route.KAFKA.value)
    if kafka_mode == ConsumerMode.OFF.value:
        doc["consumer_lag"] = {"not_applicable": f"phase {current.label} runs no Kafka consumer"}
    else:
        lag = _read(lambda: metric_latest(ctx, kafka_lag_metric(ctx), window=RECENT))
        doc["consumer_lag"] = (
            {"cannot_tell": lag.reason}
            if isinstance(lag, _Unknown)
            else {"value": None if lag is None else lag[1], "window": human_window(RECENT)}
        )

    if kafka_mode != ConsumerMode.VERIFY.value:
        doc["parity"] = {
            "not_applicable": f"phase {current.label} runs no Kafka consumer in verify mode "
            "(parity is measured in phase 3)"
        }
    else:
        parity = _read(lambda: verify_parity(ctx, parity_window))
        doc["parity"] = (
            {"cannot_tell": parity.reason}
            if isinstance(parity, _Unknown)
            else {
                "ratio": parity.ratio,
                "matches": parity.matches,
                "mismatches": parity.mismatches,
                "window": human_window(parity_window),
            }
        )

    firing = alarms_in_alarm(ctx)
    doc["alarms_in_alarm"] = firing
    if firing:
        problems.append(f"{len(firing)} alarm(s) in ALARM: {', '.join(firing)}")
    return doc, problems


def _entry(
    name: str, found: T | _Unknown | None, details: Callable[[T], dict[str, Any]]
) -> dict[str, Any]:
    """A resource's entry: why it cannot be told, that it does not exist, or its ``details``."""
    if isinstance(found, _Unknown):
        return {"name": name, "cannot_tell": found.reason}
    if found is None:
        return {"name": name, "exists": False}
    return {"name": name, "exists": True, **details(found)}


def _value(value: Any) -> Any:
    if isinstance(value, _Unknown):
        return {"cannot_tell": value.reason}
    return value if value is not None else "not found"


def _rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("phase", f"{doc['phase']} ({doc['phase_title']})"),
        ("publish to", " + ".join(doc["publish_targets"])),
        ("consumers", ", ".join(f"{r}={mode}" for r, mode in doc["consumer_modes"].items())),
        ("database", _show(doc["database"])),
        ("RDS Proxy", _show(doc["db_proxy"])),
        ("job queue", _queue_row(doc["queue"])),
        ("DLQ", _queue_row(doc["dlq"])),
        ("failed jobs", _queue_row(doc["failed_jobs"])),
    ]
    batch = doc["batch"]
    if batch.get("exists"):
        jobs = ", ".join(f"{s} {n}" for s, n in batch["jobs"].items() if n) or "no jobs"
        rows.append(("Batch job queue", f"{batch['name']}: {batch['state']}; {jobs}"))
    else:
        rows.append(("Batch job queue", _absent(batch)))
    pipe = doc["pipe"]
    rows.append(
        (
            "SQS -> Batch pipe",
            f"{pipe['name']}: desired {pipe['desired']}, current {pipe['current']}"
            if pipe.get("exists")
            else _absent(pipe),
        )
    )
    kafka = doc["kafka"]
    rows.append(
        (
            "MSK cluster",
            f"{kafka['name']}: {kafka['state']}" if kafka.get("exists") else _absent(kafka),
        )
    )
    svc = doc["consumer_service"]
    rows.append(
        (
            "Kafka consumer (ECS)",
            f"{svc['name']}: {svc['running']}/{svc['desired']} running"
            if svc.get("exists")
            else _absent(svc),
        )
    )
    lag = doc["consumer_lag"]
    rows.append(
        (
            "consumer lag",
            _cannot(lag)
            if "cannot_tell" in lag
            else f"not applicable: {lag['not_applicable']}"
            if "not_applicable" in lag
            else (
                f"{fmt_int(lag['value'])} (latest, {lag['window']})"
                if lag["value"] is not None
                else f"no data in {lag['window']}"
            ),
        )
    )
    parity = doc["parity"]
    rows.append(
        (
            "verify parity",
            _cannot(parity)
            if "cannot_tell" in parity
            else f"not applicable: {parity['not_applicable']}"
            if "not_applicable" in parity
            else f"{fmt_pct(parity['ratio'], 3)} ({fmt_int(parity['mismatches'])} mismatches in "
            f"{fmt_int(parity['matches'] + parity['mismatches'])}, {parity['window']})",
        )
    )
    firing = doc["alarms_in_alarm"]
    rows.append(("alarms in ALARM", ", ".join(firing) if firing else "none"))
    return rows


def _queue_row(entry: dict[str, Any]) -> str:
    if not entry.get("exists"):
        return _absent(entry)
    age = entry.get("oldest_age_seconds")
    age_text = "no age data" if age is None else f"oldest {fmt_int(age)} s"
    return (
        f"{entry['name']}: {entry['visible']} visible, {entry['in_flight']} in flight, "
        f"{entry['delayed']} delayed; {age_text}"
    )


def _absent(entry: dict[str, Any]) -> str:
    if "cannot_tell" in entry:
        return _cannot(entry)
    return f"{entry['name']}: does not exist"


def _cannot(entry: dict[str, Any]) -> str:
    return f"cannot tell: {entry['cannot_tell']}"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return _cannot(value)
    return str(value)
