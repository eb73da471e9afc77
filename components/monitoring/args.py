"""What the stack passes to the monitoring component: one optional args object per resource
group, present only when the group exists in the phase, each naming what it watches by physical
name; and the CloudWatch namespaces of the AWS metrics watched."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Namespaces of the AWS metrics watched here.
SQS_NS = "AWS/SQS"
KAFKA_NS = "AWS/Kafka"
ECS_INSIGHTS_NS = "ECS/ContainerInsights"
RDS_NS = "AWS/RDS"
PIPES_NS = "AWS/EventBridge/Pipes"
EVENTS_NS = "AWS/Events"

DAY_SECONDS = 86_400
LATENCY_TRIGGER_PERIOD_SECONDS = 300
"""SQS publishes its metrics every 5 minutes; the latency trigger counts breaching periods."""
LATENCY_TRIGGER_PERIODS = DAY_SECONDS // LATENCY_TRIGGER_PERIOD_SECONDS
"""One day of 5-minute periods (288): PutMetricAlarm allows at most one day of evaluation for
periods shorter than an hour."""


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
