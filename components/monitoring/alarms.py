"""The alarms of a phase as data (``AlarmSpec``, one builder per resource group: tests read
them without running the program) and the CloudWatch alarm resource one spec becomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.monitoring.args import (
    DAY_SECONDS,
    ECS_INSIGHTS_NS,
    EVENTS_NS,
    KAFKA_NS,
    LATENCY_TRIGGER_PERIOD_SECONDS,
    LATENCY_TRIGGER_PERIODS,
    PIPES_NS,
    RDS_NS,
    SQS_NS,
    BatchMonitoring,
    ConsumerLagMonitoring,
    DatabaseMonitoring,
    KafkaMonitoring,
    MigrationTriggers,
    MonitoringArgs,
    PipeMonitoring,
    QueueMonitoring,
    ServiceMonitoring,
)
from jobstream.contract import metrics as m

GIB = 1024**3
CLOUDWATCH_MAX_EVALUATION_SECONDS = 7 * DAY_SECONDS
"""PutMetricAlarm: Period x EvaluationPeriods may not exceed seven days."""

# Fixed evaluation windows (the thresholds themselves come from stack config).
QUEUE_EVALUATION_MINUTES = 15
BROKER_EVALUATION_MINUTES = 15
LAG_EVALUATION_MINUTES = 15
ECS_BELOW_DESIRED_MINUTES = 10
RDS_EVALUATION_MINUTES = 15
PROXY_AUTH_FAILURES_PER_5_MIN = 5
LAG_MISSING_MINUTES = 15


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: Mapping[str, str]
    stat: str
    """A statistic (``Maximum``) or a percentile (``p99``, an extended statistic)."""
    period: int

    @property
    def is_percentile(self) -> bool:
        return self.stat.startswith("p")


@dataclass(frozen=True)
class AlarmSpec:
    slug: str
    """Logical and physical name suffix, e.g. ``sqs-queue-depth``."""
    description: str
    threshold: float
    evaluation_periods: int
    """The alarm fires when every one of these periods breaches (unless datapoints_to_alarm)."""
    metric: Metric | None = None
    expression: str | None = None
    """Metric math over ``inputs`` (ids m0, m1, ...); the alarm watches the expression."""
    inputs: tuple[Metric, ...] = ()
    comparison: str = "GreaterThanThreshold"
    treat_missing_data: str = "notBreaching"
    notify_ok: bool = True
    datapoints_to_alarm: int | None = None
    """M of the evaluation periods that must breach (None: all of them)."""


def _window(period: int, minutes: int) -> int:
    return max(1, minutes * 60 // period)


def queue_alarms(q: QueueMonitoring) -> list[AlarmSpec]:
    periods = _window(300, QUEUE_EVALUATION_MINUTES)
    queue = {"QueueName": q.queue_name}
    return [
        AlarmSpec(
            "sqs-queue-depth",
            f"More than {q.depth_threshold} jobs waiting in {q.queue_name} for "
            f"{QUEUE_EVALUATION_MINUTES} minutes: Batch is not keeping up (check the pipe and "
            "the compute environment).",
            q.depth_threshold,
            periods,
            metric=Metric(SQS_NS, "ApproximateNumberOfMessagesVisible", queue, "Maximum", 300),
        ),
        AlarmSpec(
            "sqs-oldest-message-age",
            f"The oldest job in {q.queue_name} is older than {q.age_threshold_seconds} s: jobs "
            "are not being picked up.",
            q.age_threshold_seconds,
            periods,
            metric=Metric(SQS_NS, "ApproximateAgeOfOldestMessage", queue, "Maximum", 300),
        ),
        AlarmSpec(
            "sqs-dead-letters",
            f"Jobs are in the dead-letter queue {q.dead_letter_queue_name}: inspect them and "
            "redrive once the cause is fixed.",
            0,
            1,
            metric=Metric(
                SQS_NS,
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": q.dead_letter_queue_name},
                "Maximum",
                300,
            ),
        ),
    ]


def trigger_alarms(t: MigrationTriggers) -> list[AlarmSpec]:
    if not 1 <= t.sustained_days * DAY_SECONDS <= CLOUDWATCH_MAX_EVALUATION_SECONDS:
        raise ValueError(
            f"sustained_days={t.sustained_days}: a CloudWatch alarm evaluates at most "
            f"{CLOUDWATCH_MAX_EVALUATION_SECONDS // DAY_SECONDS} daily periods"
        )
    sent = Metric(SQS_NS, "NumberOfMessagesSent", {"QueueName": t.queue_name}, "Sum", DAY_SECONDS)
    age = {"QueueName": t.queue_name}
    return [
        AlarmSpec(
            "trigger-jobs-per-day",
            f"MIGRATION TRIGGER (volume) fired: more than {t.jobs_per_day} jobs per day were "
            f"sent to {t.queue_name} on each of the last {t.sustained_days} days. SQS + Batch "
            "has reached the load the migration was planned for: run `jobstream triggers` to "
            "review, then plan the move to the next phase (docs/monitoring.md).",
            t.jobs_per_day,
            t.sustained_days,
            expression="FILL(m0, 0)",
            inputs=(sent,),
            notify_ok=False,
        ),
        AlarmSpec(
            "trigger-latency",
            f"MIGRATION TRIGGER (latency) fired: the oldest job in {t.queue_name} was older "
            f"than {t.latency_seconds:g} s (5-minute maximum) in at least "
            f"{t.datapoints_to_alarm} of the last {LATENCY_TRIGGER_PERIODS} 5-minute periods "
            f"({t.latency_breach_percent:g} % of a day). Jobs need a lower start latency than "
            "SQS + Batch gives: run `jobstream triggers` to review, then plan the move to the "
            "next phase (docs/monitoring.md).",
            t.latency_seconds,
            LATENCY_TRIGGER_PERIODS,
            metric=Metric(
                SQS_NS,
                "ApproximateAgeOfOldestMessage",
                age,
                "Maximum",
                LATENCY_TRIGGER_PERIOD_SECONDS,
            ),
            notify_ok=False,
            datapoints_to_alarm=t.datapoints_to_alarm,
        ),
    ]


def batch_alarms(b: BatchMonitoring) -> list[AlarmSpec]:
    return [
        AlarmSpec(
            "batch-failed-jobs",
            f"AWS Batch jobs failed for good and are parked in {b.failed_jobs_queue_name} with "
            "their message: run `jobstream parked` to see why, fix the cause, then `jobstream "
            "redrive --source failed-jobs`.",
            0,
            1,
            metric=Metric(
                SQS_NS,
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": b.failed_jobs_queue_name},
                "Maximum",
                300,
            ),
        ),
        AlarmSpec(
            "batch-failed-jobs-capture",
            f"EventBridge could not deliver failed-job events of rule {b.failed_jobs_rule_name} "
            f"to {b.failed_jobs_queue_name} (FailedInvocations): check the queue policy; the "
            "jobs' messages are in the Batch job history only.",
            0,
            1,
            metric=Metric(
                EVENTS_NS, "FailedInvocations", {"RuleName": b.failed_jobs_rule_name}, "Sum", 300
            ),
        ),
    ]


def messaging_alarms(stack: str) -> list[AlarmSpec]:
    return [
        AlarmSpec(
            "routing-stale",
            f"A producer or consumer of stack {stack} could not refresh the routing document "
            "for several TTLs and runs on an old phase (metric "
            f"{m.NAMESPACE}/{m.ROUTING_STALE}): check its SSM access and network path.",
            0,
            1,
            metric=Metric(m.NAMESPACE, m.ROUTING_STALE, {m.DIM_STACK: stack}, "Sum", 300),
        )
    ]


def pipe_alarms(p: PipeMonitoring) -> list[AlarmSpec]:
    dims = {"PipeName": p.pipe_name}
    return [
        AlarmSpec(
            "pipe-failures",
            f"The pipe {p.pipe_name} failed to submit jobs to Batch (ExecutionFailed + "
            "TargetStageFailed): check its log group and the pipe role.",
            0,
            1,
            expression="FILL(m0, 0) + FILL(m1, 0)",
            inputs=(
                Metric(PIPES_NS, "ExecutionFailed", dims, "Sum", 300),
                Metric(PIPES_NS, "TargetStageFailed", dims, "Sum", 300),
            ),
        )
    ]


def kafka_alarms(k: KafkaMonitoring) -> list[AlarmSpec]:
    if k.broker_count is None:
        # Serverless: none of these metrics exist, and FILL(ActiveControllerCount, 0) would sit
        # in ALARM (MSK Developer Guide, metrics for serverless clusters).
        return []
    cluster = {"Cluster Name": k.cluster_name}
    periods = _window(300, BROKER_EVALUATION_MINUTES)
    specs = [
        AlarmSpec(
            "msk-offline-partitions",
            f"{k.cluster_name} has offline partitions: producers and consumers of those "
            "partitions are stopped.",
            0,
            1,
            metric=Metric(KAFKA_NS, "OfflinePartitionsCount", cluster, "Maximum", 300),
        ),
        AlarmSpec(
            "msk-active-controller",
            f"{k.cluster_name} does not have exactly one active controller for 5 minutes.",
            0,
            5,
            expression="ABS(FILL(m0, 0) - 1)",
            inputs=(Metric(KAFKA_NS, "ActiveControllerCount", cluster, "Sum", 60),),
        ),
    ]
    for broker in range(1, k.broker_count + 1):
        dims = {"Cluster Name": k.cluster_name, "Broker ID": str(broker)}
        specs += [
            AlarmSpec(
                f"msk-broker-{broker}-cpu",
                f"Broker {broker} of {k.cluster_name}: CPU user + system above "
                f"{k.cpu_threshold_percent}% for {BROKER_EVALUATION_MINUTES} minutes (AWS "
                "advises staying below 60% to survive a broker failure).",
                k.cpu_threshold_percent,
                periods,
                expression="m0 + m1",
                inputs=(
                    Metric(KAFKA_NS, "CpuUser", dims, "Average", 300),
                    Metric(KAFKA_NS, "CpuSystem", dims, "Average", 300),
                ),
            ),
            AlarmSpec(
                f"msk-broker-{broker}-disk",
                f"Broker {broker} of {k.cluster_name}: data-log disk above "
                f"{k.disk_threshold_percent}% used.",
                k.disk_threshold_percent,
                1,
                metric=Metric(KAFKA_NS, "KafkaDataLogsDiskUsed", dims, "Maximum", 300),
            ),
            AlarmSpec(
                f"msk-broker-{broker}-under-replicated",
                f"Broker {broker} of {k.cluster_name} has under-replicated partitions for "
                f"{BROKER_EVALUATION_MINUTES} minutes.",
                0,
                periods,
                metric=Metric(KAFKA_NS, "UnderReplicatedPartitions", dims, "Maximum", 300),
            ),
        ]
    return specs


def lag_alarms(c: ConsumerLagMonitoring) -> list[AlarmSpec]:
    dims = c.dimensions
    periods = _window(300, LAG_EVALUATION_MINUTES)
    specs = [
        AlarmSpec(
            "kafka-consumer-lag",
            f"Consumer group {c.consumer_group} is more than {c.lag_threshold} messages behind "
            f"on {c.topic} for {LAG_EVALUATION_MINUTES} minutes: the ML consumer is not "
            "keeping up (check its tasks and auto scaling).",
            c.lag_threshold,
            periods,
            metric=Metric(KAFKA_NS, "SumOffsetLag", dims, "Maximum", 300),
        )
    ]
    if c.ecs_cluster_name and c.ecs_service_name:
        tasks = {"ClusterName": c.ecs_cluster_name, "ServiceName": c.ecs_service_name}
        specs.append(
            AlarmSpec(
                "kafka-consumer-lag-missing",
                f"No consumer-lag data for group {c.consumer_group} on {c.topic} for "
                f"{LAG_MISSING_MINUTES} minutes while consumer tasks run: MSK emits lag only "
                "while the group is STABLE or EMPTY, so the group is rebalancing (or its "
                "offsets are not committed) and lag scaling is blind; the CPU policy is the "
                "backstop. Check the consumer logs for rebalances.",
                0,
                _window(300, LAG_MISSING_MINUTES),
                # 1 while tasks run and no lag point exists (lag is never negative).
                expression="IF(FILL(m1, 0) > 0 AND FILL(m0, -1) < 0, 1, 0)",
                inputs=(
                    Metric(KAFKA_NS, "SumOffsetLag", dims, "Maximum", 300),
                    Metric(ECS_INSIGHTS_NS, "RunningTaskCount", tasks, "Average", 300),
                ),
            )
        )
    return specs


def service_alarms(s: ServiceMonitoring) -> list[AlarmSpec]:
    dims = s.dimensions
    periods = _window(60, ECS_BELOW_DESIRED_MINUTES)
    return [
        AlarmSpec(
            "ecs-running-below-desired",
            f"{s.service_name} has run fewer tasks than desired for {ECS_BELOW_DESIRED_MINUTES} "
            "minutes: tasks are failing to start or crashing (check the service events).",
            0,
            periods,
            expression="FILL(m0, 0) - FILL(m1, 0)",
            inputs=(
                Metric(ECS_INSIGHTS_NS, "DesiredTaskCount", dims, "Average", 60),
                Metric(ECS_INSIGHTS_NS, "RunningTaskCount", dims, "Average", 60),
            ),
        )
    ]


def database_alarms(d: DatabaseMonitoring) -> list[AlarmSpec]:
    instance = {"DBInstanceIdentifier": d.instance_id}
    periods = _window(300, RDS_EVALUATION_MINUTES)
    return [
        AlarmSpec(
            "rds-cpu",
            f"{d.instance_id}: CPU above {d.cpu_threshold_percent}% for "
            f"{RDS_EVALUATION_MINUTES} minutes.",
            d.cpu_threshold_percent,
            periods,
            metric=Metric(RDS_NS, "CPUUtilization", instance, "Average", 300),
        ),
        AlarmSpec(
            "rds-free-storage",
            f"{d.instance_id}: less than {d.free_storage_threshold_gb} GiB of storage free.",
            d.free_storage_threshold_gb * GIB,
            1,
            metric=Metric(RDS_NS, "FreeStorageSpace", instance, "Minimum", 300),
            comparison="LessThanThreshold",
        ),
        AlarmSpec(
            "rds-proxy-auth-failures",
            f"{d.proxy_name}: {PROXY_AUTH_FAILURES_PER_5_MIN} or more client connections "
            "failed authentication in 5 minutes (IAM token or TLS problems in a client).",
            PROXY_AUTH_FAILURES_PER_5_MIN,
            1,
            metric=Metric(
                RDS_NS, "ClientConnectionsSetupFailedAuth", {"ProxyName": d.proxy_name}, "Sum", 300
            ),
            comparison="GreaterThanOrEqualToThreshold",
        ),
    ]


def alarm_specs(args: MonitoringArgs) -> list[AlarmSpec]:
    """Every alarm of the stack's phase (a pure function of the args: tests read it directly)."""
    specs: list[AlarmSpec] = []
    if args.queue is not None:
        specs += queue_alarms(args.queue)
    if args.triggers is not None:
        specs += trigger_alarms(args.triggers)
    if args.batch is not None:
        specs += batch_alarms(args.batch)
    if args.pipe is not None:
        specs += pipe_alarms(args.pipe)
    if args.kafka is not None:
        specs += kafka_alarms(args.kafka)
    if args.consumer_lag is not None:
        specs += lag_alarms(args.consumer_lag)
    if args.service is not None:
        specs += service_alarms(args.service)
    specs += database_alarms(args.database)
    specs += messaging_alarms(args.stack)
    return specs


def metric_alarm(
    logical: str,
    alarm_name: str,
    spec: AlarmSpec,
    topic_arn: pulumi.Output[str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    common: dict[str, Any] = {
        "name": alarm_name,
        "alarm_description": spec.description,
        "comparison_operator": spec.comparison,
        "threshold": spec.threshold,
        "evaluation_periods": spec.evaluation_periods,
        "datapoints_to_alarm": spec.datapoints_to_alarm or spec.evaluation_periods,
        "treat_missing_data": spec.treat_missing_data,
        "alarm_actions": [topic_arn],
        "ok_actions": [topic_arn] if spec.notify_ok else [],
    }
    if spec.expression is not None:
        queries = [
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"m{i}",
                return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=metric.namespace,
                    metric_name=metric.name,
                    dimensions=dict(metric.dimensions),
                    stat=metric.stat,
                    period=metric.period,
                ),
            )
            for i, metric in enumerate(spec.inputs)
        ]
        queries.append(
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="e0", expression=spec.expression, label=spec.slug, return_data=True
            )
        )
        return aws.cloudwatch.MetricAlarm(logical, metric_queries=queries, opts=opts, **common)
    assert spec.metric is not None, spec.slug
    metric = spec.metric
    statistic: dict[str, Any] = (
        {"extended_statistic": metric.stat} if metric.is_percentile else {"statistic": metric.stat}
    )
    return aws.cloudwatch.MetricAlarm(
        logical,
        namespace=metric.namespace,
        metric_name=metric.name,
        dimensions=dict(metric.dimensions),
        period=metric.period,
        opts=opts,
        **statistic,
        **common,
    )
