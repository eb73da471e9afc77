"""The sections of the stack config that Kafka (MSK), the consumer service on it and the
monitoring take, with the limits and rules of each beside its keys (see ``sections``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from infra.config.batch import fargate_size
from infra.config.keys import (
    REQUIRED,
    Problem,
    Values,
    choice,
    integer,
    key,
    number,
    one_of,
    pattern,
    problem,
    section,
    string_list,
)
from jobstream.contract.choices import EnhancedMonitoring, KafkaMode, TopicManager

_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,200}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")

# --------------------------------------------------------------------------------------------
# Kafka (MSK)

MSK_TOPIC_API_MIN_VERSION = (3, 6, 0)
"""MSK topic APIs (aws.msk.Topic): 'Your cluster must be an MSK Provisioned cluster. These APIs
are not available for MSK Serverless clusters.' / 'Your cluster must be running Apache Kafka
version 3.6.0 or later.' (Amazon MSK Developer Guide, Requirements for using topic APIs)."""


def _version(text: str) -> tuple[int, ...]:
    """``3.6.0`` -> (3, 6, 0); ``3.9.x.kraft`` -> (3, 9)."""
    parts: list[int] = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@section("Kafka (MSK)")
@dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    topic_manager: TopicManager = key(
        "kafka",
        choice(TopicManager),
        TopicManager.AWS,
        "Topic manager: aws (aws.msk.Topic, control plane) or kafka (pulumi-kafka, needs broker reach).",
    )
    mode: KafkaMode = key(
        "kafkaMode",
        choice(KafkaMode),
        KafkaMode.PROVISIONED,
        "MSK provisioned or serverless (IAM only).",
    )
    version: str = key(
        "kafkaVersion",
        pattern(
            re.compile(r"^\d+\.\d+\.\d+(\.x)?(\.kraft)?$"),
            "must be an MSK Kafka version like 3.8.x",
        ),
        "3.8.x",
        "Kafka version (provisioned); 3.6.0 or later for the aws topic manager.",
    )
    instance_type: str = key(
        "kafkaInstanceType",
        pattern(
            re.compile(r"^kafka\.[a-z0-9]+\.[a-z0-9]+$"),
            "must be an MSK broker type like kafka.m7g.large",
        ),
        "kafka.t3.small",
        "Broker instance type.",
    )
    broker_count: int = key(
        "kafkaBrokerCount", integer(1, 30), 2, "Brokers; a multiple of azCount."
    )
    volume_size_gb: int = key(
        "kafkaVolumeSizeGb", integer(1, 16_384), 100, "Initial EBS volume per broker (GiB)."
    )
    max_volume_size_gb: int = key(
        "kafkaMaxVolumeSizeGb",
        integer(1, 16_384),
        500,
        "Storage auto scaling ceiling per broker (GiB).",
    )
    storage_target_percent: int = key(
        "kafkaStorageTargetPercent",
        integer(10, 80),
        60,
        "Storage auto scaling target utilisation (%).",
    )
    enhanced_monitoring: EnhancedMonitoring = key(
        "kafkaEnhancedMonitoring",
        choice(EnhancedMonitoring),
        EnhancedMonitoring.PER_TOPIC_PER_BROKER,
        "MSK enhanced monitoring level.",
    )
    topic_name: str = key(
        "topicName",
        pattern(_RESOURCE_NAME, "must be a Kafka topic name (letters, digits, . _ -)"),
        "jobstream.jobs",
        "Jobs topic; the dead-letter topic is <topicName>.dlq.",
    )
    topic_partitions: int = key(
        "topicPartitions", integer(1, 1000), 6, "Partitions of the jobs topic."
    )
    replication_factor: int = key(
        "topicReplicationFactor", integer(1, 5), 2, "Replication factor; <= kafkaBrokerCount."
    )
    min_insync_replicas: int = key(
        "topicMinInsyncReplicas", integer(1, 4), 1, "min.insync.replicas; < topicReplicationFactor."
    )
    topic_retention_hours: int = key(
        "topicRetentionHours", integer(1, 8760), 168, "Retention of the jobs topic."
    )
    dead_letter_retention_hours: int = key(
        "deadLetterRetentionHours", integer(1, 8760), 336, "Retention of the dead-letter topic."
    )
    consumer_group: str = key(
        "consumerGroup",
        pattern(_RESOURCE_NAME, "must be a consumer group name (letters, digits, . _ -)"),
        "jobstream-ml",
        "Consumer group of the ML service.",
    )
    producer_security_group_ids: tuple[str, ...] = key(
        "producerSecurityGroupIds",
        string_list(
            re.compile(r"^sg-[0-9a-f]{8,17}$"), "security group ids (sg-...)", allow_empty=True
        ),
        (),
        "Security groups of the producers (outside this stack) admitted to the brokers.",
    )

    @property
    def dead_letter_topic_name(self) -> str:
        return f"{self.topic_name}.dlq"

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        if v["kafka"] is TopicManager.AWS:
            if v["kafkaMode"] is KafkaMode.SERVERLESS:
                yield problem(
                    v,
                    "kafka",
                    "the aws topic manager uses the MSK topic APIs, which are not available for "
                    "MSK Serverless clusters: set jobstream:kafka to kafka (pulumi-kafka) or "
                    "jobstream:kafkaMode to provisioned",
                    "kafkaMode",
                )
            elif _version(v["kafkaVersion"]) < MSK_TOPIC_API_MIN_VERSION:
                yield problem(
                    v,
                    "kafka",
                    "the aws topic manager uses the MSK topic APIs, which need Apache Kafka "
                    "3.6.0 or later: set jobstream:kafkaVersion to 3.6.0 or later, or "
                    "jobstream:kafka to kafka (pulumi-kafka)",
                    "kafkaVersion",
                )
        if v["kafkaMode"] is KafkaMode.PROVISIONED:
            if v["kafkaBrokerCount"] % v["azCount"] != 0:
                yield problem(
                    v,
                    "kafkaBrokerCount",
                    f"must be a multiple of azCount ({v['azCount']})",
                    "azCount",
                )
            if v["topicReplicationFactor"] > v["kafkaBrokerCount"]:
                yield problem(
                    v,
                    "topicReplicationFactor",
                    f"must be <= kafkaBrokerCount ({v['kafkaBrokerCount']})",
                    "kafkaBrokerCount",
                )
            if v["kafkaMaxVolumeSizeGb"] < v["kafkaVolumeSizeGb"]:
                yield problem(
                    v,
                    "kafkaMaxVolumeSizeGb",
                    f"must be >= kafkaVolumeSizeGb ({v['kafkaVolumeSizeGb']})",
                    "kafkaVolumeSizeGb",
                )
        if v["topicMinInsyncReplicas"] >= v["topicReplicationFactor"]:
            yield problem(
                v,
                "topicMinInsyncReplicas",
                f"must be < topicReplicationFactor ({v['topicReplicationFactor']}) so that one "
                "replica can be down without stopping producers",
                "topicReplicationFactor",
            )


# --------------------------------------------------------------------------------------------
# Kafka consumer service (ECS); it always runs on Fargate.

FARGATE_CPU_UNITS: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384)
"""1024 units = 1 vCPU."""


@section("Kafka consumer service (ECS)")
@dataclass(frozen=True, kw_only=True)
class ConsumerServiceConfig:
    desired_count: int = key(
        "consumerDesiredCount", integer(0, 100), 1, "Tasks of the Kafka consumer service."
    )
    min_count: int = key("consumerMinCount", integer(0, 100), 1, "Auto scaling floor.")
    max_count: int = key(
        "consumerMaxCount",
        integer(1, 100),
        4,
        "Auto scaling ceiling; <= topicPartitions (more tasks would idle).",
    )
    cpu: int = key(
        "consumerCpu", one_of(FARGATE_CPU_UNITS, "Fargate CPU units"), 1024, "CPU units per task."
    )
    memory_mib: int = key(
        "consumerMemoryMib",
        integer(512, 122_880),
        2048,
        "Memory per task (MiB); a valid Fargate size for consumerCpu.",
    )
    lag_target_per_task: int = key(
        "consumerLagTargetPerTask",
        integer(1, 1_000_000),
        1000,
        "Target-tracking: offset lag per task (used where MSK publishes lag).",
    )
    cpu_target_percent: int = key(
        "consumerCpuTargetPercent",
        integer(10, 95),
        60,
        "Target-tracking: CPU utilisation (the only policy on serverless clusters, the backstop of the lag policy on provisioned ones).",
    )

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        yield from fargate_size(v, "consumerCpu", "consumerMemoryMib", v["consumerCpu"] / 1024)
        if v["consumerMinCount"] > v["consumerMaxCount"]:
            yield problem(
                v,
                "consumerMinCount",
                f"must be <= consumerMaxCount ({v['consumerMaxCount']}): the auto scaling floor "
                "lies above its ceiling",
                "consumerMaxCount",
            )
        elif not v["consumerMinCount"] <= v["consumerDesiredCount"] <= v["consumerMaxCount"]:
            yield problem(
                v,
                "consumerDesiredCount",
                "must lie within consumerMinCount..consumerMaxCount "
                f"({v['consumerMinCount']}..{v['consumerMaxCount']})",
                "consumerMinCount",
                "consumerMaxCount",
            )
        if v["consumerMaxCount"] > v["topicPartitions"]:
            yield problem(
                v,
                "consumerMaxCount",
                f"must be <= topicPartitions ({v['topicPartitions']}); extra consumers would idle",
                "topicPartitions",
            )


# --------------------------------------------------------------------------------------------
# Monitoring and migration triggers


@section("Monitoring and migration triggers")
@dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    alert_email: str = key(
        "alertEmail",
        pattern(_EMAIL, "must be an e-mail address like ops@example.com"),
        REQUIRED,
        "Address subscribed to the alert topic.",
    )
    queue_depth_threshold: int = key(
        "queueDepthThreshold",
        integer(1, 10_000_000),
        1000,
        "Alarm: visible messages in the job queue.",
    )
    queue_age_threshold_seconds: int = key(
        "queueAgeThresholdSeconds",
        integer(1, 1_209_600),
        900,
        "Alarm: age of the oldest job in the queue.",
    )
    consumer_lag_threshold: int = key(
        "consumerLagThreshold",
        integer(1, 100_000_000),
        10_000,
        "Alarm: Kafka consumer lag of the ML group.",
    )
    msk_cpu_threshold_percent: int = key(
        "mskCpuThresholdPercent", integer(1, 100), 60, "Alarm: broker CPU user + system."
    )
    msk_disk_threshold_percent: int = key(
        "mskDiskThresholdPercent", integer(1, 100), 80, "Alarm: broker data-log disk used."
    )
    rds_cpu_threshold_percent: int = key(
        "rdsCpuThresholdPercent", integer(1, 100), 80, "Alarm: database CPU."
    )
    rds_free_storage_threshold_gb: int = key(
        "rdsFreeStorageThresholdGb",
        integer(1, 65_536),
        5,
        "Alarm: database free storage below (GiB).",
    )
    trigger_jobs_per_day: int = key(
        "triggerJobsPerDay",
        integer(1, 1_000_000_000),
        10_000,
        "Migration trigger: jobs per day ...",
    )
    trigger_sustained_days: int = key(
        "triggerSustainedDays",
        integer(1, 7),
        7,
        "... sustained for this many consecutive days (a CloudWatch alarm evaluates at most 7 days).",
    )
    trigger_latency_seconds: float = key(
        "triggerLatencySeconds",
        number(0.001, 86_400),
        1.0,
        "Migration trigger: the 5-minute maximum age of the oldest job above this ...",
    )
    trigger_latency_breach_percent: float = key(
        "triggerLatencyBreachPercent",
        number(0.1, 100),
        1.0,
        "... in at least this share (%) of the last day's 5-minute periods (1 = the p99 of the 5-minute maxima).",
    )
