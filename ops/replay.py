"""``jobstream replay --stack S --repair-log PATH``: re-publish to Kafka the dual-write copies a
producer's repair log holds (``jobstream.messaging.publishers.RepairLog``).

A producer in phases 2-3 writes each job to SQS (the primary: it decides the publish) and hands
the Kafka copy to a background writer; a copy Kafka refused after its retries (a broker outage)
stays in the producer's repair log. This command publishes those copies again, to the brokers
the routing document names (with its Kafka auth; the region is the stack's), counts each one that
got through in ``Jobstream/SecondaryPublishRepaired{Stack, Route=kafka}`` (the 3 -> 4 gate reads
it), and removes from the log only what Kafka accepted. A copy published twice is harmless: the
consumers' ledger applies a job once. The log may be shared with a running producer (appends are
made under a file lock).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from jobstream.contract import metrics as m
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.metrics import CloudWatchMetrics
from jobstream.messaging.publishers import KafkaPublisher, RepairEntry, RepairLog, RepairState
from ops.arguments import kafka_timeout_seconds, non_negative_number
from ops.aws_clients import EXIT_CHECK_FAILED, EXIT_OK, ResourceMissingError, UsageError
from ops.errors import handles_errors
from ops.kafka_log import kafka_logger
from ops.live import (
    add_stack_arguments,
    open_live_stack,
    read_routing,
)
from ops.report import console, print_json

DEFAULT_DELIVERY_TIMEOUT_SECONDS = 30.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="re-publish to Kafka the dual-write copies a producer's repair log holds",
        description=(
            "Publish again every copy a producer's repair log holds as failed (and, with "
            "--pending-older-than, copies still pending that long: their producer may have "
            "died), count each delivered one in SecondaryPublishRepaired, and remove only "
            "those from the log."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--repair-log", required=True, type=Path, metavar="PATH", help="the producer's repair log"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; publish nothing"
    )
    parser.add_argument(
        "--pending-older-than",
        type=non_negative_number,
        metavar="SECONDS",
        help="also replay copies still pending after this many seconds (their producer died)",
    )
    parser.add_argument(
        "--delivery-timeout",
        type=kafka_timeout_seconds,
        default=DEFAULT_DELIVERY_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long Kafka may take to accept a copy (default {DEFAULT_DELIVERY_TIMEOUT_SECONDS:g})",
    )
    parser.set_defaults(handler=run)


def due(log: RepairLog, pending_older_than: float | None, now: float) -> list[RepairEntry]:
    """What ``RepairLog.replay`` publishes with these arguments."""
    return [
        e
        for e in log.entries(include_pending=pending_older_than is not None)
        if e.state is RepairState.FAILED
        or (pending_older_than is not None and now - e.at >= pending_older_than)
    ]


@handles_errors
def run(args: argparse.Namespace) -> int:
    path: Path = args.repair_log
    if not path.is_file():
        raise UsageError(
            f"no repair log at {path}",
            hint="give the path the producer's RepairLog writes (one file per producer)",
        )
    ctx = open_live_stack(args)
    routing = read_routing(ctx)
    metrics = CloudWatchMetrics(ctx.aws.client("cloudwatch"), ctx.stack, interval=None)
    log = RepairLog(path, metrics=metrics)
    entries = due(log, args.pending_older_than, time.time())
    # An empty log is "nothing to replay" in any phase (exit 0, as documented); only copies
    # that are due need somewhere to go.
    if entries and routing.bootstrap_brokers is None:
        raise ResourceMissingError(
            f"the routing document of phase {routing.phase} names no Kafka brokers: there is "
            f"no Kafka to replay the {len(entries)} due cop(ies) to",
            hint="repair logs are written in phases 2-3, while producers dual-write",
        )
    document: dict[str, Any] = {
        "command": "replay",
        "stack": ctx.stack,
        "region": ctx.aws.region,
        "phase": routing.phase,
        "repair_log": str(path),
        "brokers": routing.bootstrap_brokers,
        "dry_run": args.dry_run,
        "entries": [_entry(e) for e in entries],
        "delivered": 0,
        "still_failing": 0,
        "metric": f"{m.NAMESPACE}/{m.SECONDARY_PUBLISH_REPAIRED}",
        "metric_sent": None,
    }
    code = EXIT_OK
    if entries and routing.bootstrap_brokers is not None and not args.dry_run:
        publisher = KafkaPublisher(
            producer_config(
                routing.bootstrap_brokers,
                kafka_auth=routing.kafka_auth,
                region=ctx.aws.region,
                delivery_timeout_ms=int(args.delivery_timeout * 1000),
                extra={"logger": kafka_logger()},
            ),
            metrics=metrics,
        )
        try:
            delivered, still = log.replay(
                {publisher.route: publisher}, pending_older_than=args.pending_older_than
            )
        finally:
            publisher.close()
            metrics.close()
        document["delivered"], document["still_failing"] = delivered, still
        document["metric_sent"] = metrics.dropped_batches == 0
        if still or metrics.dropped_batches:
            code = EXIT_CHECK_FAILED
    document["remaining"] = len(log.entries(include_pending=True))
    document["exit_code"] = code
    if args.json:
        print_json(document)
    else:
        _print(document)
    return code


def _entry(entry: RepairEntry) -> dict[str, Any]:
    return {
        "job_id": entry.envelope.job_id,
        "route": entry.route,
        "topic": entry.topic,
        "state": entry.state.value,
        "error": entry.error,
        "recorded_at": entry.at,
        "age_seconds": max(0.0, time.time() - entry.at),
    }


def _print(doc: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    brokers = doc["brokers"] or f"(none in phase {doc['phase']})"
    title = f"replay: {doc['repair_log']} -> Kafka {brokers} (stack {doc['stack']})"
    if doc["entries"]:
        table = Table(title=title, title_justify="left")
        for column in ("job id", "route", "topic", "state", "age", "last error"):
            table.add_column(column, overflow="fold")
        for e in doc["entries"]:
            table.add_row(
                e["job_id"], e["route"], e["topic"], e["state"], f"{e['age_seconds']:.0f} s",
                e["error"],
            )  # fmt: skip
        out.print(table)
    else:
        out.print(f"{title}: nothing to replay")
    if doc["dry_run"]:
        out.print(f"dry run: {len(doc['entries'])} cop(ies) would be replayed; nothing published")
        return
    if doc["entries"]:
        style = "green" if doc["exit_code"] == 0 else "bold red"
        out.print(
            f"[{style}]delivered {doc['delivered']}, still failing {doc['still_failing']}, "
            f"{doc['remaining']} left in the log[/]"
        )
        if doc["metric_sent"] is False:
            out.print(
                f"[bold red]{doc['metric']} could not be sent to CloudWatch: the 3 -> 4 gate "
                "will not see these repairs[/]"
            )
