"""What the live account says: one small reader per question the operator commands ask.

Readers return plain values, ``None`` for a resource that does not exist, and raise
``CannotTellError`` where the account gives no answer (an API this endpoint does not serve, no
CloudWatch data in the window, a transitional state). Access and credential problems raise
``OpsError`` subclasses (see ``ops.aws_clients``) and stop the command.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infra import config as config_module
from infra.config import read_stack_config
from jobstream.contract import metrics as m
from jobstream.contract.names import Names
from ops.aws_clients import (
    Aws,
    CannotTellError,
    NotFoundError,
    aws_call,
    page_items,
    pages,
)

# ``read_routing`` and ``add_stack_arguments`` live in the light ``ops.live`` (no pulumi import),
# shared with the recovery commands (parked, redrive, replay); re-exported here for the others.
from ops.live import add_stack_arguments as add_stack_arguments
from ops.live import read_routing as read_routing

BATCH_STATES: tuple[str, ...] = (
    "SUBMITTED",
    "PENDING",
    "RUNNABLE",
    "STARTING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
)
BATCH_ACTIVE_STATES: tuple[str, ...] = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
PIPE_TRANSITIONAL = frozenset({"CREATING", "STARTING", "STOPPING", "UPDATING", "DELETING"})


# ---- the stack ------------------------------------------------------------------------------


@dataclass
class StackContext:
    """A stack's config (``Pulumi.<stack>.yaml``), its physical names, and an AWS session."""

    cfg: config_module.StackConfig
    names: Names
    aws: Aws
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def stack(self) -> str:
        return self.cfg.stack


def open_stack(args: argparse.Namespace) -> StackContext:
    """Read the stack's config (exit 2 when it is missing or invalid) and open a session."""
    raw = read_stack_config(args.stack)
    cfg = config_module.parse(raw, stack=args.stack, source=f"Pulumi.{args.stack}.yaml")
    region = args.region or cfg.region
    return StackContext(cfg=cfg, names=cfg.names, aws=Aws(region, args.profile))


# ---- SQS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    name: str
    url: str
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_depth(ctx: StackContext, queue_name: str) -> QueueDepth | None:
    sqs = ctx.aws.client("sqs")
    try:
        with aws_call("sqs:GetQueueUrl"):
            url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        with aws_call("sqs:GetQueueAttributes"):
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
    except NotFoundError:
        return None
    return QueueDepth(
        name=queue_name,
        url=url,
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


# ---- CloudWatch metrics ---------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: Mapping[str, str]

    def describe(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in self.dimensions.items())
        return f"{self.namespace}/{self.name}{{{dims}}}"


def jobstream_metric(ctx: StackContext, name: str, **dimensions: str) -> Metric:
    return Metric(m.NAMESPACE, name, {m.DIM_STACK: ctx.stack, **dimensions})


def sqs_metric(queue_name: str, name: str) -> Metric:
    return Metric("AWS/SQS", name, {"QueueName": queue_name})


def kafka_lag_metric(ctx: StackContext, name: str = "SumOffsetLag") -> Metric:
    return Metric(
        "AWS/Kafka",
        name,
        {
            "Cluster Name": ctx.names.kafka_cluster,
            "Consumer Group": ctx.cfg.kafka.consumer_group,
            "Topic": ctx.cfg.kafka.topic_name,
        },
    )


def metric_series(
    ctx: StackContext,
    metric: Metric,
    *,
    stat: str,
    start: datetime,
    end: datetime,
    period: int,
) -> list[tuple[datetime, float]]:
    """Datapoints (oldest first) of one metric and statistic; empty when CloudWatch has none."""
    cw = ctx.aws.client("cloudwatch")
    query: dict[str, Any] = {
        "Id": "q",
        "MetricStat": {
            "Metric": {
                "Namespace": metric.namespace,
                "MetricName": metric.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in metric.dimensions.items()],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }
    points: dict[datetime, float] = {}
    try:
        for page in pages(
            cw,
            "get_metric_data",
            "cloudwatch:GetMetricData",
            MetricDataQueries=[query],
            StartTime=start,
            EndTime=end,
            ScanBy="TimestampAscending",
        ):
            for result in page.get("MetricDataResults", []):
                for ts, value in zip(
                    result.get("Timestamps", []), result.get("Values", []), strict=False
                ):
                    points[ts] = float(value)
    except NotFoundError:
        return []
    return sorted(points.items())


def metric_total(
    ctx: StackContext, metric: Metric, *, window: timedelta, period: int = 3600
) -> float | None:
    """Sum of a counter over the window ending now; ``None`` when CloudWatch has no data."""
    series = metric_series(
        ctx, metric, stat="Sum", start=ctx.now - window, end=ctx.now, period=period
    )
    return sum(v for _, v in series) if series else None


def metric_max(
    ctx: StackContext, metric: Metric, *, window: timedelta, period: int = 60
) -> float | None:
    series = metric_series(
        ctx, metric, stat="Maximum", start=ctx.now - window, end=ctx.now, period=period
    )
    return max(v for _, v in series) if series else None


def metric_latest(
    ctx: StackContext, metric: Metric, *, window: timedelta, stat: str = "Maximum", period: int = 60
) -> tuple[datetime, float] | None:
    series = metric_series(
        ctx, metric, stat=stat, start=ctx.now - window, end=ctx.now, period=period
    )
    return series[-1] if series else None


ONE_MINUTE_DATA_DAYS = 15
FIVE_MINUTE_DATA_DAYS = 63
"""How long CloudWatch keeps 1-minute and 5-minute datapoints: for a start further back,
GetMetricData returns no data for a shorter period than 300 s, then 3600 s (CloudWatch API
Reference, MetricStat, ``Period``)."""


def period_for(window: timedelta, *, minimum: int = 60) -> int:
    """A CloudWatch period (multiple of 60 s) that keeps a window under ~1,400 datapoints and
    respects the retention of fine-grained data (``ONE_MINUTE_DATA_DAYS``,
    ``FIVE_MINUTE_DATA_DAYS``)."""
    seconds = window.total_seconds()
    period = max(minimum, math.ceil(seconds / 1400 / 60) * 60)
    if seconds > ONE_MINUTE_DATA_DAYS * 86400:
        period = max(period, 300)
    if seconds > FIVE_MINUTE_DATA_DAYS * 86400:
        period = max(period, 3600)
    return period


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty collection."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# ---- RDS ------------------------------------------------------------------------------------


def db_instance_status(ctx: StackContext, identifier: str) -> str | None:
    try:
        with aws_call("rds:DescribeDBInstances"):
            found = ctx.aws.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)
    except NotFoundError:
        return None
    instances = found.get("DBInstances", [])
    return str(instances[0].get("DBInstanceStatus")) if instances else None


def db_proxy_status(ctx: StackContext, name: str) -> str | None:
    try:
        with aws_call("rds:DescribeDBProxies"):
            found = ctx.aws.client("rds").describe_db_proxies(DBProxyName=name)
    except NotFoundError:
        return None
    proxies = found.get("DBProxies", [])
    return str(proxies[0].get("Status")) if proxies else None


# ---- MSK ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaCluster:
    name: str
    arn: str
    state: str
    kind: str  # PROVISIONED / SERVERLESS


def kafka_cluster(ctx: StackContext, name: str) -> KafkaCluster | None:
    kafka = ctx.aws.client("kafka")
    try:
        for info in page_items(
            kafka,
            "list_clusters_v2",
            "kafka:ListClustersV2",
            "ClusterInfoList",
            ClusterNameFilter=name,
        ):
            if info.get("ClusterName") == name:  # the filter matches prefixes too
                return KafkaCluster(
                    name=name,
                    arn=str(info["ClusterArn"]),
                    state=str(info.get("State")),
                    kind=str(info.get("ClusterType", "PROVISIONED")),
                )
    except NotFoundError:
        return None
    return None


def kafka_topics(ctx: StackContext, cluster_arn: str) -> set[str]:
    """Topic names through the MSK control plane (``kafka:ListTopics``)."""
    kafka = ctx.aws.client("kafka")
    listed = page_items(kafka, "list_topics", "kafka:ListTopics", "Topics", ClusterArn=cluster_arn)
    try:
        return {str(t.get("TopicName")) for t in listed}
    except NotFoundError as error:
        raise CannotTellError(f"kafka:ListTopics: {error.code}") from None


def kafka_bootstrap_brokers(ctx: StackContext, cluster_arn: str) -> set[str]:
    """Every bootstrap broker string the cluster offers (TLS, IAM, plaintext...)."""
    try:
        with aws_call("kafka:GetBootstrapBrokers"):
            found = ctx.aws.client("kafka").get_bootstrap_brokers(ClusterArn=cluster_arn)
    except NotFoundError as error:
        raise CannotTellError(f"kafka:GetBootstrapBrokers: {error.code}") from None
    return {str(v) for k, v in found.items() if k.startswith("BootstrapBrokerString") and v}


# ---- Batch, Pipes, ECS ----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchQueue:
    name: str
    state: str  # ENABLED / DISABLED
    status: str  # VALID / CREATING / ...
    jobs: Mapping[str, int]

    @property
    def active_jobs(self) -> int:
        return sum(self.jobs.get(s, 0) for s in BATCH_ACTIVE_STATES)


def batch_queue(ctx: StackContext, name: str, *, count_jobs: bool = True) -> BatchQueue | None:
    batch = ctx.aws.client("batch")
    try:
        with aws_call("batch:DescribeJobQueues"):
            queues = batch.describe_job_queues(jobQueues=[name]).get("jobQueues", [])
    except NotFoundError:
        return None
    if not queues:
        return None
    jobs: dict[str, int] = {}
    if count_jobs:
        for state in BATCH_STATES:
            jobs[state] = _count_jobs(ctx, name, state)
    return BatchQueue(
        name=name,
        state=str(queues[0].get("state")),
        status=str(queues[0].get("status")),
        jobs=jobs,
    )


def _count_jobs(ctx: StackContext, queue: str, state: str) -> int:
    batch = ctx.aws.client("batch")
    jobs = page_items(
        batch, "list_jobs", "batch:ListJobs", "jobSummaryList", jobQueue=queue, jobStatus=state
    )
    return sum(1 for _ in jobs)


def batch_job_definition_active(ctx: StackContext, name: str) -> bool:
    with aws_call("batch:DescribeJobDefinitions"):
        found = ctx.aws.client("batch").describe_job_definitions(
            jobDefinitionName=name, status="ACTIVE"
        )
    return bool(found.get("jobDefinitions"))


@dataclass(frozen=True)
class PipeState:
    name: str
    desired: str
    current: str


def pipe_state(ctx: StackContext, name: str) -> PipeState | None:
    try:
        with aws_call("pipes:DescribePipe"):
            found = ctx.aws.client("pipes").describe_pipe(Name=name)
    except NotFoundError:
        return None
    return PipeState(
        name=name,
        desired=str(found.get("DesiredState", "")),
        current=str(found.get("CurrentState", "")),
    )


@dataclass(frozen=True)
class EcsService:
    name: str
    status: str
    desired: int
    running: int


def ecs_service(ctx: StackContext, cluster: str, service: str) -> EcsService | None:
    try:
        with aws_call("ecs:DescribeServices"):
            found = ctx.aws.client("ecs").describe_services(cluster=cluster, services=[service])
    except NotFoundError:
        return None
    services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        return None
    s = services[0]
    return EcsService(
        name=service,
        status=str(s.get("status")),
        desired=int(s.get("desiredCount", 0)),
        running=int(s.get("runningCount", 0)),
    )


# ---- alarms ---------------------------------------------------------------------------------


def alarms_in_alarm(ctx: StackContext) -> list[str]:
    cw = ctx.aws.client("cloudwatch")
    names: list[str] = []
    for page in pages(
        cw,
        "describe_alarms",
        "cloudwatch:DescribeAlarms",
        AlarmNamePrefix=ctx.names.alarm_prefix,
        StateValue="ALARM",
        AlarmTypes=["MetricAlarm", "CompositeAlarm"],
    ):
        # Filter again on the answer: the state filter is applied by the service, and some
        # endpoints (moto) ignore it when a name prefix is given.
        for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
            if alarm.get("StateValue") == "ALARM":
                names.append(str(alarm["AlarmName"]))
    return sorted(names)


# ---- derived figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class Parity:
    matches: float
    mismatches: float

    @property
    def compared(self) -> float:
        return self.matches + self.mismatches

    @property
    def ratio(self) -> float:
        return self.matches / self.compared


def verify_parity(ctx: StackContext, window: timedelta) -> Parity:
    """Verify-mode parity over the window; ``CannotTellError`` when nothing was compared."""
    period = period_for(window, minimum=3600)
    matches = metric_total(
        ctx, jobstream_metric(ctx, m.VERIFY_MATCHES), window=window, period=period
    )
    mismatches = metric_total(
        ctx, jobstream_metric(ctx, m.VERIFY_MISMATCHES), window=window, period=period
    )
    parity = Parity(matches or 0.0, mismatches or 0.0)
    if parity.compared == 0:
        raise CannotTellError(
            f"no {m.VERIFY_MATCHES}/{m.VERIFY_MISMATCHES} data for stack {ctx.stack} in the "
            f"last {_human(window)} (is the Kafka consumer running in verify mode?)"
        )
    return parity


def _human(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" + ("s" if days != 1 else "")
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} h"
    return f"{seconds // 60} min"


human_window = _human
