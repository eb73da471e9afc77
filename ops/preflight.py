"""``jobstream preflight --stack S --to-phase N``: the gates that must hold before a phase change.

The phase in force comes from the stack's routing parameter. A change must be one step (up, or
down = rollback, never back from cleanup). Each check reports pass / fail / cannot-tell with
the figure it saw; the exit code is 0 only when every check passes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from jobstream.contract import metrics as m
from jobstream.contract.phases import PHASES, ResourceGroup, adjacent_changes, phase
from jobstream.contract.routing import Routing, RoutingError
from ops.arguments import positive_number, positive_ratio
from ops.aws_clients import CannotTellError, UsageError, handles_errors, page_items
from ops.probes import (
    StackContext,
    add_stack_arguments,
    alarms_in_alarm,
    batch_job_definition_active,
    batch_queue,
    db_instance_status,
    db_proxy_status,
    ecs_service,
    human_window,
    jobstream_metric,
    kafka_bootstrap_brokers,
    kafka_cluster,
    kafka_lag_metric,
    kafka_topics,
    metric_max,
    metric_series,
    metric_total,
    open_stack,
    period_for,
    pipe_state,
    queue_depth,
    read_routing,
    sqs_metric,
    verify_parity,
)
from ops.report import (
    Check,
    check,
    checks_table,
    console,
    exit_code,
    failed,
    fmt_int,
    fmt_pct,
    passed,
    print_json,
    summary,
    verdict_of,
)

DEFAULT_WINDOW_HOURS = 24.0
DEFAULT_MIN_DUAL_WRITE_RATIO = 0.99
DEFAULT_MIN_PARITY = 0.999
DEFAULT_MAX_LAG = 1000
DEFAULT_LAG_WINDOW_MINUTES = 15.0
LAG_PERIODS = (1, 5, 10, 30, 60)
"""CloudWatch periods a lag read may use: below 60 s only for high-resolution metrics."""
DEFAULT_LAG_PERIOD_SECONDS = 60
"""MSK publishes the consumer-group lag metrics once a minute."""
DEFAULT_DRAIN_WINDOW_HOURS = 1.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "preflight",
        help="check the gates for moving a stack one phase up or down (reads the live account)",
        description=(
            "Check, against the live AWS account, what must hold before the stack moves to "
            "--to-phase. Exit 0 only when every check passes."
        ),
    )
    add_stack_arguments(parser)
    parser.add_argument("--to-phase", type=int, required=True, choices=PHASES, metavar="N")
    parser.add_argument(
        "--window-hours",
        type=positive_number,
        default=DEFAULT_WINDOW_HOURS,
        help=f"window for dual-write, parity and dead-letter figures (default {DEFAULT_WINDOW_HOURS:g})",
    )
    parser.add_argument(
        "--min-dual-write-ratio",
        type=positive_ratio,
        default=DEFAULT_MIN_DUAL_WRITE_RATIO,
        help=f"to 3: jobs published to Kafka / jobs published to SQS (default {DEFAULT_MIN_DUAL_WRITE_RATIO})",
    )
    parser.add_argument(
        "--min-parity",
        type=positive_ratio,
        default=DEFAULT_MIN_PARITY,
        help=f"to 4: verify matches / compared (default {DEFAULT_MIN_PARITY})",
    )
    parser.add_argument(
        "--max-lag",
        type=positive_number,
        default=DEFAULT_MAX_LAG,
        help=f"to 4: highest Kafka consumer lag (SumOffsetLag) allowed (default {DEFAULT_MAX_LAG})",
    )
    parser.add_argument(
        "--lag-period-seconds",
        type=int,
        choices=LAG_PERIODS,
        default=DEFAULT_LAG_PERIOD_SECONDS,
        help=(
            "CloudWatch period of the lag reads (default 60: MSK's lag metrics are per minute; "
            "shorter periods need high-resolution data, as the local rehearsal publishes)"
        ),
    )
    parser.add_argument(
        "--lag-window-minutes",
        type=positive_number,
        default=DEFAULT_LAG_WINDOW_MINUTES,
        help=(
            "to 4: window for the lag figure; to 2: the window in which the consumer must have "
            f"caught up (default {DEFAULT_LAG_WINDOW_MINUTES:g})"
        ),
    )
    parser.add_argument(
        "--drain-window-hours",
        type=positive_number,
        default=DEFAULT_DRAIN_WINDOW_HOURS,
        help=f"to 5: the SQS queue must have been empty this long (default {DEFAULT_DRAIN_WINDOW_HOURS:g})",
    )
    parser.set_defaults(handler=run)


@handles_errors
def run(args: argparse.Namespace) -> int:
    ctx = open_stack(args)
    routing = read_routing(ctx)
    current, target = routing.phase, args.to_phase
    if (current, target) not in adjacent_changes():
        if current == target:
            raise UsageError(f"stack {ctx.stack} is already at phase {current}")
        allowed = sorted(b for a, b in adjacent_changes() if a == current)
        raise UsageError(
            f"stack {ctx.stack} is at phase {current}; moving to {target} is not a supported "
            f"change (one step at a time, never back from {max(PHASES)}): allowed targets: "
            + (", ".join(map(str, allowed)) or "none")
        )
    checks = gates(ctx, args, current, target)
    code = exit_code(checks)
    direction = "up" if target > current else "rollback"
    if args.json:
        print_json(
            {
                "command": "preflight",
                "stack": ctx.stack,
                "region": ctx.aws.region,
                "from_phase": current,
                "to_phase": target,
                "direction": direction,
                "checks": [c.to_json() for c in checks],
                "summary": summary(checks),
                "passed": code == 0,
                "exit_code": code,
            }
        )
        return code
    out = console()
    title = (
        f"preflight: stack {ctx.stack} ({ctx.aws.region}), phase {phase(current).label} -> "
        f"{phase(target).label}" + (" [rollback]" if direction == "rollback" else "")
    )
    out.print(checks_table(title, checks))
    counts = summary(checks)
    verdict = "READY" if code == 0 else "NOT READY"
    out.print(
        f"{verdict}: {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['cannot-tell']} cannot tell (exit {code})"
    )
    return code


def gates(ctx: StackContext, args: argparse.Namespace, current: int, target: int) -> list[Check]:
    if target < current:
        return rollback_checks(ctx, target, args)
    builders: dict[int, Callable[[StackContext, argparse.Namespace], list[Check]]] = {
        2: to_dual_write,
        3: to_consumer_migration,
        4: to_cutover,
        5: to_cleanup,
    }
    return builders[target](ctx, args)


# ---- single checks --------------------------------------------------------------------------


def _database_checks(ctx: StackContext) -> list[Check]:
    db_id = ctx.cfg.database.existing_instance_id or ctx.names.db_instance
    proxy = ctx.names.db_proxy
    return [
        _available(f"database {db_id} available", lambda: db_instance_status(ctx, db_id)),
        _available(f"RDS Proxy {proxy} available", lambda: db_proxy_status(ctx, proxy)),
    ]


def _available(name: str, probe: Callable[[], str | None]) -> Check:
    """A check that a resource's status is ``available``; ``probe`` returns the status."""

    def decide() -> Check:
        status = probe()
        if status is None:
            return failed(name, "not found", "available")
        return Check(name, verdict_of(status == "available"), status, "available", value=status)

    return check(name, "available", decide)


def _queue_exists(ctx: StackContext, queue_name: str, what: str) -> Check:
    def decide() -> Check:
        name = f"{what} {queue_name} exists"
        depth = queue_depth(ctx, queue_name)
        if depth is None:
            return failed(name, "not found", "exists")
        return passed(
            name, f"exists ({fmt_int(depth.total)} messages)", "exists", value=depth.total
        )

    return check(f"{what} {queue_name} exists", "exists", decide)


def _queue_empty(ctx: StackContext, queue_name: str, what: str) -> Check:
    name = f"{what} {queue_name} empty"

    def decide() -> Check:
        depth = queue_depth(ctx, queue_name)
        if depth is None:
            return failed(name, "not found", "0 messages")
        figure = f"{depth.visible} visible, {depth.in_flight} in flight, {depth.delayed} delayed"
        return Check(name, verdict_of(depth.total == 0), figure, "0 messages", value=depth.total)

    return check(name, "0 messages", decide)


def _kafka_cluster_active(ctx: StackContext) -> Check:
    name = f"MSK cluster {ctx.names.kafka_cluster} ACTIVE"

    def decide() -> Check:
        cluster = kafka_cluster(ctx, ctx.names.kafka_cluster)
        if cluster is None:
            return failed(name, "not found", "ACTIVE")
        return Check(
            name,
            verdict_of(cluster.state == "ACTIVE"),
            cluster.state,
            "ACTIVE",
            detail=cluster.arn,
            value=cluster.state,
        )

    return check(name, "ACTIVE", decide)


def _topics_present(ctx: StackContext, topics: list[str]) -> Check:
    name = "Kafka topics present"
    needs = ", ".join(topics)

    def decide() -> Check:
        cluster = kafka_cluster(ctx, ctx.names.kafka_cluster)
        if cluster is None:
            return failed(name, "cluster not found", needs)
        found = kafka_topics(ctx, cluster.arn)
        missing = [t for t in topics if t not in found]
        if missing:
            return failed(name, f"missing: {', '.join(missing)}", needs, value=len(missing))
        return passed(name, "all present", needs, value=0)

    return check(name, needs, decide)


def _brokers_match(ctx: StackContext, routing_brokers: str | None) -> Check:
    name = "routing bootstrap brokers are the cluster's"

    def decide() -> Check:
        if not routing_brokers:
            return failed(name, "routing has no bootstrap_brokers", "one of the cluster's strings")
        cluster = kafka_cluster(ctx, ctx.names.kafka_cluster)
        if cluster is None:
            return failed(name, "cluster not found", "one of the cluster's strings")
        offered = kafka_bootstrap_brokers(ctx, cluster.arn)
        ok = routing_brokers in offered
        return Check(
            name,
            verdict_of(ok),
            "match" if ok else "differ",
            "one of the cluster's strings",
            detail=f"routing: {routing_brokers}",
        )

    return check(name, "one of the cluster's strings", decide)


def _dual_write(ctx: StackContext, window: timedelta, min_ratio: float) -> Check:
    name = f"dual-write: Kafka receives what SQS receives ({human_window(window)})"
    needs = f">= {fmt_pct(min_ratio)} of SQS"

    def decide() -> Check:
        period = period_for(window, minimum=3600)
        sqs = metric_total(
            ctx, jobstream_metric(ctx, m.JOBS_PUBLISHED, Route="sqs"), window=window, period=period
        )
        if not sqs:
            raise CannotTellError(
                f"no {m.JOBS_PUBLISHED}{{Route=sqs}} data for stack {ctx.stack} in the last "
                f"{human_window(window)}: no traffic to compare"
            )
        kafka = (
            metric_total(
                ctx,
                jobstream_metric(ctx, m.JOBS_PUBLISHED, Route="kafka"),
                window=window,
                period=period,
            )
            or 0.0
        )
        failures = (
            metric_total(
                ctx,
                jobstream_metric(ctx, m.SECONDARY_PUBLISH_FAILURES, Route="kafka"),
                window=window,
                period=period,
            )
            or 0.0
        )
        ratio = kafka / sqs
        return Check(
            name,
            verdict_of(ratio >= min_ratio),
            f"{fmt_pct(ratio)} ({fmt_int(kafka)} Kafka / {fmt_int(sqs)} SQS)",
            needs,
            detail=f"{fmt_int(failures)} secondary publish failures to Kafka",
            value=ratio,
        )

    return check(name, needs, decide)


def _parity(ctx: StackContext, window: timedelta, min_parity: float) -> Check:
    name = f"verify parity ({human_window(window)})"
    needs = f">= {fmt_pct(min_parity, 3)}"

    def decide() -> Check:
        parity = verify_parity(ctx, window)
        return Check(
            name,
            verdict_of(parity.ratio >= min_parity),
            f"{fmt_pct(parity.ratio, 3)} ({fmt_int(parity.mismatches)} mismatches in "
            f"{fmt_int(parity.compared)})",
            needs,
            value=parity.ratio,
        )

    return check(name, needs, decide)


def _lag(
    ctx: StackContext,
    window: timedelta,
    max_lag: float,
    *,
    period: int = DEFAULT_LAG_PERIOD_SECONDS,
) -> Check:
    name = f"Kafka consumer lag ({human_window(window)})"
    needs = f"< {fmt_int(max_lag)}"

    def decide() -> Check:
        metric = kafka_lag_metric(ctx)
        peak = metric_max(ctx, metric, window=window, period=period)
        if peak is None:
            raise CannotTellError(
                f"no {metric.describe()} data in the last {human_window(window)} (MSK publishes "
                "lag only for an active consumer group)"
            )
        return Check(name, verdict_of(peak < max_lag), f"max {fmt_int(peak)}", needs, value=peak)

    return check(name, needs, decide)


def _current_phase_since(ctx: StackContext) -> datetime | None:
    """When the phase in force began: the first of the newest run of routing-parameter versions
    that hold this phase, if an earlier version held another (None: no phase change on record)."""
    name = ctx.names.routing_parameter
    ssm = ctx.aws.client("ssm")
    versions: list[tuple[int, datetime, int | None]] = []
    for entry in page_items(
        ssm,
        "get_parameter_history",
        "ssm:GetParameterHistory",
        "Parameters",
        Name=name,
        PaginationConfig={"PageSize": 50},  # the most the API answers with
    ):
        try:
            number: int | None = Routing.from_json(entry.get("Value", "")).phase
        except RoutingError:
            number = None
        versions.append((int(entry["Version"]), entry["LastModifiedDate"], number))
    versions.sort()
    if not versions:
        return None
    current = versions[-1][2]
    since: datetime | None = None
    for _version, modified, number in reversed(versions):
        if number != current:
            return since
        since = modified
    return None


def _lag_caught_up(
    ctx: StackContext, window: timedelta, *, period: int = DEFAULT_LAG_PERIOD_SECONDS
) -> Check:
    """Rolling back 3 -> 2 turns the Kafka consumer off: every job that went to Kafka alone
    (published in phase 4, before the rollback to 3) must have been applied first. The group's
    lag at zero at some sampling instant after phase 3 began means every message published
    before then (those jobs included) was read and committed. Judged to the minute: CloudWatch
    keeps one-minute periods."""
    name = f"Kafka consumer caught up ({human_window(window)})"
    needs = "lag 0 since phase 3 began"

    def decide() -> Check:
        metric = kafka_lag_metric(ctx)
        try:
            since = _current_phase_since(ctx)
        except CannotTellError:
            since = None
        start = ctx.now - window
        series = metric_series(ctx, metric, stat="Minimum", start=start, end=ctx.now, period=period)
        if not series:
            raise CannotTellError(
                f"no {metric.describe()} data in the last {human_window(window)} (MSK publishes "
                "lag only for an active consumer group)"
            )
        after = [
            (ts, v) for ts, v in series if since is None or ts + timedelta(seconds=period) > since
        ]
        zero = [ts for ts, v in after if v == 0]
        began = f"phase 3 began {since:%H:%M} UTC" if since is not None else "no phase change seen"
        if zero:
            return passed(
                name,
                f"0 at {zero[-1]:%H:%M} UTC",
                needs,
                detail=f"every message published before then was read; {began}",
                value=0,
            )
        low = min((v for _, v in after), default=min(v for _, v in series))
        return failed(
            name,
            f"lowest {fmt_int(low)}" + ("" if after else " (all before phase 3 began)"),
            needs,
            detail=(
                f"jobs that went to Kafka alone may be unapplied; {began}; wait for the consumer"
            ),
            value=low,
        )

    return check(name, needs, decide)


def _dead_letter_topic(ctx: StackContext, window: timedelta, topic: str) -> Check:
    name = f"dead-letter topic {topic} received nothing ({human_window(window)})"

    def decide() -> Check:
        metric = jobstream_metric(ctx, m.DEAD_LETTERED, Consumer="kafka")
        total = metric_total(ctx, metric, window=window, period=period_for(window, minimum=3600))
        detail = f"from {metric.describe()}; the topic's contents are not read"
        if total is None:
            detail = (
                "no datapoints (the consumer sends the counter only when it dead-letters); "
                + detail
            )
        return Check(
            name, verdict_of(not total), fmt_int(total or 0), "0", detail=detail, value=total or 0
        )

    return check(name, "0", decide)


def _no_alarms(ctx: StackContext) -> Check:
    name = f"no alarm {ctx.names.alarm_prefix}* in ALARM"

    def decide() -> Check:
        firing = alarms_in_alarm(ctx)
        return Check(
            name,
            verdict_of(not firing),
            f"{len(firing)} in ALARM",
            "0",
            detail=", ".join(firing),
            value=len(firing),
        )

    return check(name, "0", decide)


def _queue_drained(ctx: StackContext, window: timedelta) -> Check:
    queue = ctx.names.job_queue
    name = f"job queue {queue} empty for {human_window(window)}"
    needs = "0 visible and 0 in flight"

    def decide() -> Check:
        depth = queue_depth(ctx, queue)
        if depth is None:
            return passed(name, "queue does not exist", needs, value=0)
        period = period_for(window)
        peaks = [
            metric_max(ctx, sqs_metric(queue, metric), window=window, period=period)
            for metric in (
                "ApproximateNumberOfMessagesVisible",
                "ApproximateNumberOfMessagesNotVisible",
            )
        ]
        seen_peak = max((p for p in peaks if p is not None), default=None)
        figure = f"now {depth.visible} visible, {depth.in_flight} in flight"
        if seen_peak is None:
            detail = (
                "no CloudWatch datapoints in the window (SQS stops sending metrics for a queue "
                "idle for 6 hours); judged on the current depth"
            )
        else:
            figure += f"; window peak {fmt_int(seen_peak)}"
            detail = "peak of ApproximateNumberOfMessagesVisible / NotVisible"
        ok = depth.total == 0 and not seen_peak
        return Check(
            name, verdict_of(ok), figure, needs, detail=detail, value=depth.total + (seen_peak or 0)
        )

    return check(name, needs, decide)


def _no_batch_jobs(ctx: StackContext) -> Check:
    queue = ctx.names.batch_job_queue
    name = f"no Batch jobs waiting or running in {queue}"
    needs = "0 SUBMITTED/PENDING/RUNNABLE/STARTING/RUNNING"

    def decide() -> Check:
        found = batch_queue(ctx, queue)
        if found is None:
            return passed(name, "job queue does not exist", needs, value=0)
        busy = {s: n for s, n in found.jobs.items() if n and s not in ("SUCCEEDED", "FAILED")}
        figure = ", ".join(f"{n} {s}" for s, n in busy.items()) or "none"
        return Check(name, verdict_of(not busy), figure, needs, value=found.active_jobs)

    return check(name, needs, decide)


def _exists(name: str, probe: Callable[[], str | None], needs: str = "exists") -> Check:
    """A check that the lower phase's resource is still there; ``probe`` returns its state."""

    def decide() -> Check:
        state = probe()
        if state is None:
            return failed(name, "not found", needs)
        return passed(name, f"exists ({state})", needs, value=state)

    return check(name, needs, decide)


# ---- the gates per target phase -------------------------------------------------------------


def to_dual_write(ctx: StackContext, args: argparse.Namespace) -> list[Check]:
    names = ctx.names
    return [
        *_database_checks(ctx),
        _queue_exists(ctx, names.job_queue, "job queue"),
        _queue_exists(ctx, names.dead_letter_queue, "DLQ"),
        _queue_empty(ctx, names.dead_letter_queue, "DLQ"),
    ]


def to_consumer_migration(ctx: StackContext, args: argparse.Namespace) -> list[Check]:
    routing = read_routing(ctx)
    topics = [routing.topic or ctx.cfg.kafka.topic_name]
    topics.append(routing.dead_letter_topic or ctx.cfg.kafka.dead_letter_topic_name)
    window = timedelta(hours=args.window_hours)
    return [
        _kafka_cluster_active(ctx),
        _topics_present(ctx, topics),
        _brokers_match(ctx, routing.bootstrap_brokers),
        _dual_write(ctx, window, args.min_dual_write_ratio),
    ]


def to_cutover(ctx: StackContext, args: argparse.Namespace) -> list[Check]:
    routing = read_routing(ctx)
    window = timedelta(hours=args.window_hours)
    dead_letter_topic = routing.dead_letter_topic or ctx.cfg.kafka.dead_letter_topic_name
    # The cutover does not need every dual-written job in Kafka: the SQS path keeps running in
    # phase 4 and applies what reached SQS (DESIGN.md, processing guarantee).
    return [
        _parity(ctx, window, args.min_parity),
        _lag(
            ctx,
            timedelta(minutes=args.lag_window_minutes),
            args.max_lag,
            period=args.lag_period_seconds,
        ),
        _queue_empty(ctx, ctx.names.dead_letter_queue, "DLQ"),
        _queue_empty(ctx, ctx.names.failed_jobs_queue, "failed-jobs capture"),
        _dead_letter_topic(ctx, window, dead_letter_topic),
        _no_alarms(ctx),
    ]


def to_cleanup(ctx: StackContext, args: argparse.Namespace) -> list[Check]:
    """Phase 5 deletes the SQS path: it must have drained (nothing queued, in flight, running on
    Batch, or parked where only the SQS path's tools can put it back)."""
    return [
        _queue_drained(ctx, timedelta(hours=args.drain_window_hours)),
        _queue_empty(ctx, ctx.names.dead_letter_queue, "DLQ"),
        _queue_empty(ctx, ctx.names.failed_jobs_queue, "failed-jobs capture"),
        _no_batch_jobs(ctx),
    ]


def rollback_checks(
    ctx: StackContext, lower: int, args: argparse.Namespace | None = None
) -> list[Check]:
    """Going down to ``lower``: what that phase needs must still exist (kept by the upper one),
    and a consumer the change turns off must have applied what only it could."""
    names, needs = ctx.names, phase(lower)
    checks: list[Check] = []
    upper = phase(lower + 1)
    if upper.has(ResourceGroup.CONSUMER_SERVICE) and not needs.has(ResourceGroup.CONSUMER_SERVICE):
        minutes = args.lag_window_minutes if args is not None else DEFAULT_LAG_WINDOW_MINUTES
        period = args.lag_period_seconds if args is not None else DEFAULT_LAG_PERIOD_SECONDS
        checks.append(_lag_caught_up(ctx, timedelta(minutes=minutes), period=period))
    if needs.has(ResourceGroup.DATABASE):
        checks += _database_checks(ctx)
    if needs.has(ResourceGroup.JOB_QUEUE):
        for queue, what in ((names.job_queue, "job queue"), (names.dead_letter_queue, "DLQ")):
            checks.append(_queue_exists(ctx, queue, what))
    if needs.has(ResourceGroup.BATCH):

        def job_queue() -> str | None:
            found = batch_queue(ctx, names.batch_job_queue, count_jobs=False)
            return None if found is None else f"{found.state}, {found.status}"

        def job_definition() -> str | None:
            return (
                "ACTIVE" if batch_job_definition_active(ctx, names.batch_job_definition) else None
            )

        checks.append(_exists(f"Batch job queue {names.batch_job_queue} kept", job_queue))
        checks.append(
            _exists(f"Batch job definition {names.batch_job_definition} kept", job_definition)
        )
    if needs.has(ResourceGroup.SQS_TRIGGER):

        def pipe() -> str | None:
            state = pipe_state(ctx, names.pipe)
            return None if state is None else f"desired {state.desired}, current {state.current}"

        checks.append(_exists(f"pipe {names.pipe} kept", pipe))
    if needs.has(ResourceGroup.KAFKA):
        checks.append(_kafka_cluster_active(ctx))
    if needs.has(ResourceGroup.CONSUMER_SERVICE):

        def service() -> str | None:
            found = ecs_service(ctx, names.ecs_cluster, names.ecs_service)
            return None if found is None else f"{found.running}/{found.desired} running"

        checks.append(_exists(f"ECS service {names.ecs_service} kept", service))
    return checks
