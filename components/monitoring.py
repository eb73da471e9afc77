"""Alerting and the migration dashboard: the alert topic, alarms per phase, trigger alarms.

Everything is addressed by physical names (``jobstream.contract.names``) and CloudWatch dimensions, so
this component needs no outputs of the components it watches: the stack passes one optional
args object per resource group, present only when the group exists in the phase, and an alarm
exists exactly when its resource does.

- An SNS alert topic encrypted with a customer-managed KMS key (CloudWatch alarms cannot
  publish to a topic encrypted with the AWS-managed ``alias/aws/sns`` key: its key policy does
  not admit ``cloudwatch.amazonaws.com``), whose key policy and topic policy admit CloudWatch
  and EventBridge; an e-mail subscription (confirmed by the recipient).
- Alarms per resource group (SQS, Batch + pipe, MSK, consumer lag, ECS, RDS + proxy), every
  name starting with the stack's alarm prefix, each notifying the topic on ALARM and OK.
- Migration-trigger alarms while the SQS queue exists: jobs per day sustained above a threshold
  and the latency need; they notify on ALARM only and their description says what to do.
- One dashboard per stack, its body rendered from Python structures with ``Output.json_dumps``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import policy_document, service_principal
from components.kms import customer_managed_key
from jobstream.contract import metrics as m

# Namespaces of the AWS metrics watched here.
SQS_NS = "AWS/SQS"
KAFKA_NS = "AWS/Kafka"
ECS_INSIGHTS_NS = "ECS/ContainerInsights"
RDS_NS = "AWS/RDS"
PIPES_NS = "AWS/EventBridge/Pipes"
EVENTS_NS = "AWS/Events"

ALARM_PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com")
"""Service principals that publish to the alert topic (alarms, the Batch failure rule)."""

GIB = 1024**3
DAY_SECONDS = 86_400
CLOUDWATCH_MAX_EVALUATION_SECONDS = 7 * DAY_SECONDS
"""PutMetricAlarm: Period x EvaluationPeriods may not exceed seven days."""

# Fixed evaluation windows (the thresholds themselves come from stack config).
QUEUE_EVALUATION_MINUTES = 15
BROKER_EVALUATION_MINUTES = 15
LAG_EVALUATION_MINUTES = 15
ECS_BELOW_DESIRED_MINUTES = 10
RDS_EVALUATION_MINUTES = 15
PROXY_AUTH_FAILURES_PER_5_MIN = 5
LATENCY_TRIGGER_PERIOD_SECONDS = 300
"""SQS publishes its metrics every 5 minutes; the latency trigger counts breaching periods."""
LATENCY_TRIGGER_PERIODS = DAY_SECONDS // LATENCY_TRIGGER_PERIOD_SECONDS
"""One day of 5-minute periods (288): PutMetricAlarm allows at most one day of evaluation for
periods shorter than an hour."""
LAG_MISSING_MINUTES = 15


# ---- args -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueMonitoring:
    queue_name: str
    dead_letter_queue_name: str
    depth_threshold: int
    age_threshold_seconds: int


@dataclass(frozen=True)
class MigrationTriggers:
    queue_name: str
    jobs_per_day: int
    sustained_days: int
    latency_seconds: float
    latency_breach_percent: float
    """The share of the day's 5-minute periods whose maximum age must be above
    ``latency_seconds`` (1 % is the p99 of the 5-minute maxima). A percentile of
    ``ApproximateAgeOfOldestMessage`` itself cannot be alarmed on: CloudWatch computes
    percentiles from raw data points only, and SQS lists Average, Minimum, Maximum, Sum and
    SampleCount as the metric's valid statistics."""

    @property
    def datapoints_to_alarm(self) -> int:
        return max(1, math.ceil(LATENCY_TRIGGER_PERIODS * self.latency_breach_percent / 100))


@dataclass(frozen=True)
class BatchMonitoring:
    job_queue_name: str
    failed_jobs_queue_name: str
    failed_jobs_rule_name: str


@dataclass(frozen=True)
class PipeMonitoring:
    pipe_name: str


@dataclass(frozen=True)
class KafkaMonitoring:
    cluster_name: str
    broker_count: int | None
    """Brokers of a provisioned cluster (ids 1..n); None for serverless, which publishes no
    cluster or broker metrics (its CloudWatch table lists per-topic and consumer-lag metrics
    only: no ActiveControllerCount, OfflinePartitionsCount, CpuUser or KafkaDataLogsDiskUsed)."""
    cpu_threshold_percent: int
    disk_threshold_percent: int


@dataclass(frozen=True)
class ConsumerLagMonitoring:
    cluster_name: str
    consumer_group: str
    topic: str
    lag_threshold: int
    ecs_cluster_name: str = ""
    ecs_service_name: str = ""
    """The consumer service: lag data missing while its tasks run is an alarm of its own."""

    @property
    def dimensions(self) -> dict[str, str]:
        return {
            "Cluster Name": self.cluster_name,
            "Consumer Group": self.consumer_group,
            "Topic": self.topic,
        }


@dataclass(frozen=True)
class ServiceMonitoring:
    cluster_name: str
    service_name: str

    @property
    def dimensions(self) -> dict[str, str]:
        return {"ClusterName": self.cluster_name, "ServiceName": self.service_name}


@dataclass(frozen=True)
class DatabaseMonitoring:
    instance_id: str
    proxy_name: str
    cpu_threshold_percent: int
    free_storage_threshold_gb: int


@dataclass(frozen=True)
class MonitoringArgs:
    stack: str
    """Value of the ``Stack`` dimension of the messaging metrics."""
    region: str
    phase_label: str
    alert_topic_name: str
    alarm_prefix: str
    dashboard_name: str
    alert_email: str
    database: DatabaseMonitoring
    routes: Sequence[str]
    """Routes (and consumers: the consumer dimension is the route it reads) on the dashboard."""
    queue: QueueMonitoring | None = None
    triggers: MigrationTriggers | None = None
    batch: BatchMonitoring | None = None
    pipe: PipeMonitoring | None = None
    kafka: KafkaMonitoring | None = None
    consumer_lag: ConsumerLagMonitoring | None = None
    service: ServiceMonitoring | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


# ---- alarm specifications ------------------------------------------------------------------------


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


# ---- the component --------------------------------------------------------------------------------


class Monitoring(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]
    alarm_names: list[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition

        key = customer_managed_key(
            self,
            f"{name}-alerts",
            alias=args.alert_topic_name,
            description=f"{args.alert_topic_name}: alert topic encryption",
            policy=self._key_policy(account, partition),
        )
        topic = aws.sns.Topic(
            f"{name}-alerts",
            name=args.alert_topic_name,
            kms_master_key_id=key.arn,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-alerts",
            arn=topic.arn,
            policy=self._topic_policy(topic.arn, account),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-alerts-email",
            topic=topic.arn,
            protocol="email",
            endpoint=args.alert_email,
            opts=child,
        )

        failed_rule: aws.cloudwatch.EventRule | None = None
        if args.batch is not None:
            failed_rule = self._batch_failures(name, args, args.batch, topic, account, partition)

        alarms: list[aws.cloudwatch.MetricAlarm] = []
        self.alarm_names = []
        for spec in alarm_specs(args):
            alarm_name = f"{args.alarm_prefix}{spec.slug}"
            alarms.append(_alarm(f"{name}-{spec.slug}", alarm_name, spec, topic.arn, child))
            self.alarm_names.append(alarm_name)

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=args.dashboard_name,
            dashboard_body=pulumi.Output.json_dumps(
                dashboard_body(
                    args,
                    alarm_arns=[a.arn for a in alarms],
                    failed_rule_name=failed_rule.name if failed_rule is not None else None,
                )
            ),
            opts=child,
        )

        self.topic_arn = topic.arn
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs(
            {
                "topicArn": topic.arn,
                "dashboardName": dashboard.dashboard_name,
                "alarmNames": self.alarm_names,
            }
        )

    def _key_policy(
        self, account: pulumi.Output[str], partition: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        root = pulumi.Output.concat("arn:", partition, ":iam::", account, ":root")
        return policy_document(
            self,
            [
                {
                    # The key policy AWS writes when none is given: the account (its IAM
                    # policies) administers the key; without it the key cannot be managed.
                    "sid": "AccountAdministersKey",
                    "principals": [{"type": "AWS", "identifiers": [root]}],
                    "actions": ["kms:*"],
                    "resources": ["*"],
                },
                {
                    "sid": "AlarmAndEventPublishersUseKey",
                    "principals": [service_principal(s) for s in ALARM_PUBLISHERS],
                    "actions": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "resources": ["*"],
                },
            ],
        )

    def _topic_policy(
        self, topic_arn: pulumi.Output[str], account: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        return policy_document(
            self,
            [
                {
                    "sid": "AlarmAndEventPublishers",
                    "principals": [service_principal(s) for s in ALARM_PUBLISHERS],
                    "actions": ["sns:Publish"],
                    "resources": [topic_arn],
                    "conditions": [
                        {
                            "test": "StringEquals",
                            "variable": "aws:SourceAccount",
                            "values": [account],
                        }
                    ],
                },
                {
                    "sid": "DenyInsecureTransport",
                    "effect": "Deny",
                    "principals": [{"type": "*", "identifiers": ["*"]}],
                    "actions": ["sns:Publish"],
                    "resources": [topic_arn],
                    "conditions": [
                        {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}
                    ],
                },
            ],
        )

    def _batch_failures(
        self,
        name: str,
        args: MonitoringArgs,
        batch: BatchMonitoring,
        topic: aws.sns.Topic,
        account: pulumi.Output[str],
        partition: pulumi.Output[str],
    ) -> aws.cloudwatch.EventRule:
        """Batch job state changes to FAILED on the job queue -> the alert topic; the rule's
        AWS/Events ``MatchedEvents`` metric counts the failures (on the dashboard)."""
        child = pulumi.ResourceOptions(parent=self)
        queue_arn = pulumi.Output.concat(
            "arn:", partition, ":batch:", args.region, ":", account, ":job-queue/",
            batch.job_queue_name,
        )  # fmt: skip
        rule = aws.cloudwatch.EventRule(
            f"{name}-batch-job-failed",
            name=f"{args.alarm_prefix}batch-job-failed",
            description=f"AWS Batch jobs that FAILED on {batch.job_queue_name}",
            event_pattern=pulumi.Output.json_dumps(
                {
                    "source": ["aws.batch"],
                    "detail-type": ["Batch Job State Change"],
                    "detail": {"status": ["FAILED"], "jobQueue": [queue_arn]},
                }
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-batch-job-failed",
            rule=rule.name,
            arn=topic.arn,
            input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                input_paths={
                    "job": "$.detail.jobName",
                    "id": "$.detail.jobId",
                    "reason": "$.detail.statusReason",
                },
                input_template=(
                    f'"{args.stack}: AWS Batch job <job> (<id>) FAILED on '
                    f'{batch.job_queue_name}: <reason>"'
                ),
            ),
            opts=child,
        )
        return rule


def _alarm(
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


# ---- the dashboard --------------------------------------------------------------------------------


WIDTH, HEIGHT = 12, 6


def _metric_line(
    namespace: str, name: str, dimensions: Mapping[str, pulumi.Input[str]], **options: Any
) -> list[Any]:
    line: list[Any] = [namespace, name]
    for key, value in dimensions.items():
        line += [key, value]
    return [*line, options] if options else line


def dashboard_body(
    args: MonitoringArgs,
    *,
    alarm_arns: Sequence[pulumi.Input[str]] = (),
    failed_rule_name: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """The dashboard as a Python structure (``Output.json_dumps`` renders it)."""
    stack = {m.DIM_STACK: args.stack}
    widgets: list[dict[str, Any]] = []

    def graph(title: str, metrics: list[list[Any]], **properties: Any) -> None:
        widgets.append(
            {
                "type": "metric",
                "width": WIDTH,
                "height": HEIGHT,
                "properties": {
                    "title": title,
                    "region": args.region,
                    "view": "timeSeries",
                    "stacked": False,
                    "period": 300,
                    "metrics": metrics,
                    **properties,
                },
            }
        )

    widgets.append(
        {
            "type": "text",
            "width": 2 * WIDTH,
            "height": 2,
            "properties": {
                "markdown": f"## jobstream {args.stack}: phase {args.phase_label}\n"
                f"Messaging metrics: namespace `{m.NAMESPACE}`, dimension "
                f"`{m.DIM_STACK}={args.stack}`. Alarms start with `{args.alarm_prefix}`.",
            },
        }
    )
    graph(
        "Jobs published per route",
        [
            _metric_line(
                m.NAMESPACE,
                metric,
                {**stack, m.DIM_ROUTE: route},
                stat="Sum",
                label=f"{metric} {route}",
            )
            for metric in (
                m.JOBS_PUBLISHED,
                m.PUBLISH_ERRORS,
                m.SECONDARY_PUBLISH_FAILURES,
                m.SECONDARY_PUBLISH_REPAIRED,
            )
            for route in args.routes
        ],
    )
    if args.queue is not None:
        q = args.queue
        graph(
            "SQS queue depth and age",
            [
                _metric_line(
                    SQS_NS,
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": q.queue_name},
                    stat="Maximum",
                    label="jobs waiting",
                ),
                _metric_line(
                    SQS_NS,
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": q.dead_letter_queue_name},
                    stat="Maximum",
                    label="dead letters",
                ),
                _metric_line(
                    SQS_NS,
                    "ApproximateAgeOfOldestMessage",
                    {"QueueName": q.queue_name},
                    stat="Maximum",
                    label="oldest job (s)",
                    yAxis="right",
                ),
            ],
        )
    if args.consumer_lag is not None:
        c = args.consumer_lag
        dims = c.dimensions
        graph(
            f"Kafka consumer lag ({c.consumer_group})",
            [
                _metric_line(KAFKA_NS, "SumOffsetLag", dims, stat="Maximum", label="total lag"),
                _metric_line(
                    KAFKA_NS, "MaxOffsetLag", dims, stat="Maximum", label="worst partition lag"
                ),
            ],
            annotations={"horizontal": [{"label": "alarm", "value": c.lag_threshold}]},
        )
    graph(
        "Processing time per consumer (ms)",
        [
            _metric_line(
                m.NAMESPACE,
                m.PROCESSING_TIME,
                {**stack, m.DIM_CONSUMER: consumer},
                stat=stat,
                label=f"{consumer} {stat}",
            )
            for consumer in args.routes
            for stat in ("Average", "p99")
        ],
    )
    graph(
        "Applied, duplicates and errors per consumer",
        [
            _metric_line(
                m.NAMESPACE,
                metric,
                {**stack, m.DIM_CONSUMER: consumer},
                stat="Sum",
                label=f"{metric} {consumer}",
            )
            for metric in (
                m.JOBS_APPLIED,
                m.DUPLICATES_SKIPPED,
                m.PROCESSING_ERRORS,
                m.DEAD_LETTERED,
            )
            for consumer in args.routes
        ],
    )
    graph(
        "Verify parity (Kafka consumer in verify mode)",
        [
            [{"expression": "100 * m0 / (m0 + m1)", "label": "parity %", "id": "e0"}],
            _metric_line(
                m.NAMESPACE, m.VERIFY_MATCHES, stack, stat="Sum", id="m0", label="matches"
            ),
            _metric_line(
                m.NAMESPACE,
                m.VERIFY_MISMATCHES,
                stack,
                stat="Sum",
                id="m1",
                label="mismatches",
                yAxis="right",
            ),
            _metric_line(
                m.NAMESPACE,
                m.VERIFY_DEFERRED,
                stack,
                stat="Sum",
                label="deferred (compared when the SQS path applies)",
                yAxis="right",
            ),
            _metric_line(
                m.NAMESPACE,
                m.ROUTING_STALE,
                stack,
                stat="Sum",
                label="stale routing refreshes",
                yAxis="right",
            ),
        ],
        yAxis={"left": {"min": 0, "max": 100}},
    )
    if failed_rule_name is not None or args.pipe is not None:
        lines: list[list[Any]] = []
        if failed_rule_name is not None:
            lines.append(
                _metric_line(
                    EVENTS_NS,
                    "MatchedEvents",
                    {"RuleName": failed_rule_name},
                    stat="Sum",
                    label="Batch jobs FAILED",
                )
            )
        if args.batch is not None:
            lines.append(
                _metric_line(
                    SQS_NS,
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": args.batch.failed_jobs_queue_name},
                    stat="Maximum",
                    label="failed jobs parked",
                )
            )
        if args.pipe is not None:
            for metric in ("ExecutionFailed", "TargetStageFailed"):
                lines.append(
                    _metric_line(
                        PIPES_NS,
                        metric,
                        {"PipeName": args.pipe.pipe_name},
                        stat="Sum",
                        label=f"pipe {metric}",
                    )
                )
        graph("Batch failures", lines)
    if args.service is not None:
        dims = args.service.dimensions
        graph(
            "ML consumer tasks (ECS)",
            [
                _metric_line(
                    ECS_INSIGHTS_NS, "DesiredTaskCount", dims, stat="Average", label="desired"
                ),
                _metric_line(
                    ECS_INSIGHTS_NS, "RunningTaskCount", dims, stat="Average", label="running"
                ),
            ],
        )
    d = args.database
    graph(
        "Database",
        [
            _metric_line(
                RDS_NS,
                "CPUUtilization",
                {"DBInstanceIdentifier": d.instance_id},
                stat="Average",
                label="CPU %",
            ),
            _metric_line(
                RDS_NS,
                "ClientConnectionsSetupFailedAuth",
                {"ProxyName": d.proxy_name},
                stat="Sum",
                label="proxy auth failures",
                yAxis="right",
            ),
        ],
    )
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


def _place(widgets: list[dict[str, Any]]) -> None:
    """Lay widgets out left to right, top to bottom, on the 24-column grid."""
    x = y = row_height = 0
    for widget in widgets:
        if x + widget["width"] > 2 * WIDTH:
            x, y, row_height = 0, y + row_height, 0
        widget["x"], widget["y"] = x, y
        x += widget["width"]
        row_height = max(row_height, widget["height"])
