"""The migration dashboard as data: a header, the graphs of ``GRAPHS`` in order, the alarms.

A graph is a title and its metric lines. A line names the set of dimensions it is drawn under
(``Scope``); a scope exists only while the resources it names do (the SQS queue up to phase 4,
the consumer service from phase 3, ...), so a line whose scope is missing is left out and a
graph with no line left is not drawn. The per-route graphs repeat their metrics for every route
(``PerRoute``). ``dashboard_body`` renders all of it into the structure that
``Output.json_dumps`` turns into the dashboard body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

import pulumi

from components.monitoring.args import (
    ECS_INSIGHTS_NS,
    EVENTS_NS,
    KAFKA_NS,
    PIPES_NS,
    RDS_NS,
    SQS_NS,
    ConsumerLagMonitoring,
    MonitoringArgs,
)
from jobstream.contract import metrics as m

WIDTH, HEIGHT = 12, 6
"""A graph's size on the 24-column grid: two graphs a row."""
PERIOD_SECONDS = 300
SQS_VISIBLE = "ApproximateNumberOfMessagesVisible"


class Scope(Enum):
    """The dimension sets lines are drawn under (``scopes`` gives their values)."""

    STACK = auto()
    QUEUE = auto()
    DEAD_LETTER_QUEUE = auto()
    CONSUMER_LAG = auto()
    FAILED_JOBS_RULE = auto()
    FAILED_JOBS_QUEUE = auto()
    PIPE = auto()
    SERVICE = auto()
    DB_INSTANCE = auto()
    DB_PROXY = auto()


Dimensions = Mapping[str, pulumi.Input[str]]


@dataclass(frozen=True)
class Line:
    """One metric line; its options render in CloudWatch's order (stat, id, label, yAxis)."""

    namespace: str
    metric: str
    scope: Scope
    stat: str
    label: str
    id: str | None = None
    right_axis: bool = False

    def render(self, dimensions: Dimensions) -> list[Any]:
        return _metric_line(
            self.namespace, self.metric, dimensions, self.stat, self.label, self.id, self.right_axis
        )


@dataclass(frozen=True)
class Expression:
    """Metric math over the ids of the graph's other lines."""

    expression: str
    label: str
    id: str

    def render(self) -> list[Any]:
        return [{"expression": self.expression, "label": self.label, "id": self.id}]


@dataclass(frozen=True)
class Graph:
    title: str | Callable[[MonitoringArgs], str]
    """Fixed, or from the args where it names something of the stack."""
    lines: tuple[Line | Expression, ...]
    properties: Callable[[MonitoringArgs], Mapping[str, Any]] | None = None
    """Widget properties after the metrics (axes, annotations), from the args."""


@dataclass(frozen=True)
class PerRoute:
    """The messaging metrics of ``metrics`` with each statistic of ``stats``, one line per route
    (the ``dimension`` is the route a job was published to, or the consumer: the route it read)."""

    title: str
    dimension: str
    metrics: tuple[str, ...]
    stats: tuple[str, ...] = ("Sum",)
    label: str = "{metric} {route}"
    """Fields: ``metric``, ``route``, ``stat``."""


GRAPHS: tuple[Graph | PerRoute, ...] = (
    PerRoute(
        "Jobs published per route",
        m.DIM_ROUTE,
        (
            m.JOBS_PUBLISHED,
            m.PUBLISH_ERRORS,
            m.SECONDARY_PUBLISH_FAILURES,
            m.SECONDARY_PUBLISH_REPAIRED,
        ),
    ),
    Graph(
        "SQS queue depth and age",
        (
            Line(SQS_NS, SQS_VISIBLE, Scope.QUEUE, "Maximum", "jobs waiting"),
            Line(SQS_NS, SQS_VISIBLE, Scope.DEAD_LETTER_QUEUE, "Maximum", "dead letters"),
            Line(
                SQS_NS,
                "ApproximateAgeOfOldestMessage",
                Scope.QUEUE,
                "Maximum",
                "oldest job (s)",
                right_axis=True,
            ),
        ),
    ),
    Graph(
        lambda a: f"Kafka consumer lag ({_lag(a).consumer_group})",
        (
            Line(KAFKA_NS, "SumOffsetLag", Scope.CONSUMER_LAG, "Maximum", "total lag"),
            Line(KAFKA_NS, "MaxOffsetLag", Scope.CONSUMER_LAG, "Maximum", "worst partition lag"),
        ),
        properties=lambda a: {
            "annotations": {"horizontal": [{"label": "alarm", "value": _lag(a).lag_threshold}]}
        },
    ),
    PerRoute(
        "Processing time per consumer (ms)",
        m.DIM_CONSUMER,
        (m.PROCESSING_TIME,),
        stats=("Average", "p99"),
        label="{route} {stat}",
    ),
    PerRoute(
        "Applied, duplicates and errors per consumer",
        m.DIM_CONSUMER,
        (m.JOBS_APPLIED, m.DUPLICATES_SKIPPED, m.PROCESSING_ERRORS, m.DEAD_LETTERED),
    ),
    Graph(
        "Verify parity (Kafka consumer in verify mode)",
        (
            Expression("100 * m0 / (m0 + m1)", "parity %", "e0"),
            Line(m.NAMESPACE, m.VERIFY_MATCHES, Scope.STACK, "Sum", "matches", id="m0"),
            Line(
                m.NAMESPACE,
                m.VERIFY_MISMATCHES,
                Scope.STACK,
                "Sum",
                "mismatches",
                id="m1",
                right_axis=True,
            ),
            Line(
                m.NAMESPACE,
                m.VERIFY_DEFERRED,
                Scope.STACK,
                "Sum",
                "deferred (compared when the SQS path applies)",
                right_axis=True,
            ),
            Line(
                m.NAMESPACE,
                m.ROUTING_STALE,
                Scope.STACK,
                "Sum",
                "stale routing refreshes",
                right_axis=True,
            ),
        ),
        properties=lambda _: {"yAxis": {"left": {"min": 0, "max": 100}}},
    ),
    Graph(
        "Batch failures",
        (
            Line(EVENTS_NS, "MatchedEvents", Scope.FAILED_JOBS_RULE, "Sum", "Batch jobs FAILED"),
            Line(SQS_NS, SQS_VISIBLE, Scope.FAILED_JOBS_QUEUE, "Maximum", "failed jobs parked"),
            Line(PIPES_NS, "ExecutionFailed", Scope.PIPE, "Sum", "pipe ExecutionFailed"),
            Line(PIPES_NS, "TargetStageFailed", Scope.PIPE, "Sum", "pipe TargetStageFailed"),
        ),
    ),
    Graph(
        "ML consumer tasks (ECS)",
        (
            Line(ECS_INSIGHTS_NS, "DesiredTaskCount", Scope.SERVICE, "Average", "desired"),
            Line(ECS_INSIGHTS_NS, "RunningTaskCount", Scope.SERVICE, "Average", "running"),
        ),
    ),
    Graph(
        "Database",
        (
            Line(RDS_NS, "CPUUtilization", Scope.DB_INSTANCE, "Average", "CPU %"),
            Line(
                RDS_NS,
                "ClientConnectionsSetupFailedAuth",
                Scope.DB_PROXY,
                "Sum",
                "proxy auth failures",
                right_axis=True,
            ),
        ),
    ),
)


def scopes(
    args: MonitoringArgs, failed_rule_name: pulumi.Input[str] | None
) -> dict[Scope, Dimensions]:
    """The dimensions of each scope whose resources exist in the phase."""
    d = args.database
    found: dict[Scope, Dimensions] = {
        Scope.STACK: {m.DIM_STACK: args.stack},
        Scope.DB_INSTANCE: {"DBInstanceIdentifier": d.instance_id},
        Scope.DB_PROXY: {"ProxyName": d.proxy_name},
    }
    if args.queue is not None:
        found[Scope.QUEUE] = {"QueueName": args.queue.queue_name}
        found[Scope.DEAD_LETTER_QUEUE] = {"QueueName": args.queue.dead_letter_queue_name}
    if args.consumer_lag is not None:
        found[Scope.CONSUMER_LAG] = args.consumer_lag.dimensions
    if failed_rule_name is not None:
        found[Scope.FAILED_JOBS_RULE] = {"RuleName": failed_rule_name}
    if args.batch is not None:
        found[Scope.FAILED_JOBS_QUEUE] = {"QueueName": args.batch.failed_jobs_queue_name}
    if args.pipe is not None:
        found[Scope.PIPE] = {"PipeName": args.pipe.pipe_name}
    if args.service is not None:
        found[Scope.SERVICE] = args.service.dimensions
    return found


def dashboard_body(
    args: MonitoringArgs,
    *,
    alarm_arns: Sequence[pulumi.Input[str]] = (),
    failed_rule_name: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """The dashboard as a Python structure (``Output.json_dumps`` renders it)."""
    present = scopes(args, failed_rule_name)
    widgets: list[dict[str, Any]] = [_header(args)]
    for spec in GRAPHS:
        widget = (
            _per_route(args, spec, present[Scope.STACK])
            if isinstance(spec, PerRoute)
            else _graph(args, spec, present)
        )
        if widget is not None:
            widgets.append(widget)
    if alarm_arns:
        widgets.append(
            {
                "type": "alarm",
                "width": 2 * WIDTH,
                "height": HEIGHT,
                "properties": {"title": "Alarms", "alarms": list(alarm_arns)},
            }
        )
    _place(widgets)
    return {"widgets": widgets}


def _header(args: MonitoringArgs) -> dict[str, Any]:
    return {
        "type": "text",
        "width": 2 * WIDTH,
        "height": 2,
        "properties": {
            "markdown": f"## jobstream {args.stack}: phase {args.phase_label}\n"
            f"Messaging metrics: namespace `{m.NAMESPACE}`, dimension "
            f"`{m.DIM_STACK}={args.stack}`. Alarms start with `{args.alarm_prefix}`.",
        },
    }


def _graph(
    args: MonitoringArgs, graph: Graph, present: Mapping[Scope, Dimensions]
) -> dict[str, Any] | None:
    if not any(isinstance(line, Line) and line.scope in present for line in graph.lines):
        return None
    lines = [
        line.render() if isinstance(line, Expression) else line.render(present[line.scope])
        for line in graph.lines
        if isinstance(line, Expression) or line.scope in present
    ]
    title = graph.title if isinstance(graph.title, str) else graph.title(args)
    extra = graph.properties(args) if graph.properties is not None else {}
    return _metric_widget(args, title, lines, extra)


def _per_route(args: MonitoringArgs, spec: PerRoute, stack: Dimensions) -> dict[str, Any]:
    lines = [
        _metric_line(
            m.NAMESPACE,
            metric,
            {**stack, spec.dimension: route},
            stat,
            spec.label.format(metric=metric, route=route, stat=stat),
        )
        for metric in spec.metrics
        for route in args.routes
        for stat in spec.stats
    ]
    return _metric_widget(args, spec.title, lines, {})


def _metric_widget(
    args: MonitoringArgs, title: str, lines: list[list[Any]], extra: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "region": args.region,
            "view": "timeSeries",
            "stacked": False,
            "period": PERIOD_SECONDS,
            "metrics": lines,
            **extra,
        },
    }


def _metric_line(
    namespace: str,
    name: str,
    dimensions: Dimensions,
    stat: str,
    label: str,
    id_: str | None = None,
    right_axis: bool = False,
) -> list[Any]:
    options: dict[str, Any] = {"stat": stat}
    if id_ is not None:
        options["id"] = id_
    options["label"] = label
    if right_axis:
        options["yAxis"] = "right"
    line: list[Any] = [namespace, name]
    for key, value in dimensions.items():
        line += [key, value]
    return [*line, options]


def _lag(args: MonitoringArgs) -> ConsumerLagMonitoring:
    # Only called for a drawn lag graph, which exists only with consumer_lag.
    assert args.consumer_lag is not None
    return args.consumer_lag


def _place(widgets: list[dict[str, Any]]) -> None:
    """Lay widgets out left to right, top to bottom, on the 24-column grid."""
    x = y = row_height = 0
    for widget in widgets:
        if x + widget["width"] > 2 * WIDTH:
            x, y, row_height = 0, y + row_height, 0
        widget["x"], widget["y"] = x, y
        x += widget["width"]
        row_height = max(row_height, widget["height"])
