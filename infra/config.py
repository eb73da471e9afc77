"""Typed, validated stack configuration: the only module that reads Pulumi stack config.

Every key under ``jobstream:`` is declared once in ``KEYS`` (name, parser, default, help). The
README's configuration table is rendered from that declaration, unknown keys are rejected with
a suggestion, and every bad value raises ``ConfigError`` naming the key, the value it got and
what is allowed. Components never read config: the stack passes them these plain values.

The program reads its config from the engine (``load``); the offline plan and the operator
commands read ``Pulumi.<stack>.yaml`` (``read_stack_config``). This module imports neither
Pulumi nor the components (the choices they take live in ``jobstream.contract.choices``), so a
command that only needs a stack's region or names never pays for importing the program.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from jobstream.contract.choices import (
    ComputeType,
    EnhancedMonitoring,
    KafkaMode,
    NatStrategy,
    TopicManager,
)
from jobstream.contract.names import Names, longest_stack_name, name_problems
from jobstream.contract.phases import CLEANUP_PHASE, PHASES

NAMESPACE = "jobstream"
NAMESPACES: tuple[str, ...] = (NAMESPACE, "aws", "pulumi")
"""Config namespaces this program reads (its own, the AWS provider's, Pulumi's)."""
ESCAPE_KEY = "allowUnlistedValues"
"""The key that accepts a value missing from infra/known_values.json."""

MSK_TOPIC_API_MIN_VERSION = (3, 6, 0)
"""MSK topic APIs (aws.msk.Topic): 'Your cluster must be an MSK Provisioned cluster. These APIs
are not available for MSK Serverless clusters.' / 'Your cluster must be running Apache Kafka
version 3.6.0 or later.' (Amazon MSK Developer Guide, Requirements for using topic APIs)."""
RDS_MASTER_USERNAME_MAX = 16
"""CreateDBInstance MasterUsername: 'Must be 1 to 16 letters, numbers, or underscores.'"""
PERFORMANCE_INSIGHTS_FREE_DAYS = 7
"""Performance Insights retention: 7 (the default, free tier), 731, or a multiple of 31."""

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

SQS_RETENTION_RANGE = (60, 1_209_600)
SQS_VISIBILITY_RANGE = (0, 43_200)
BATCH_JOB_TIMEOUT_RANGE = (60, 14 * 24 * 3600)

# Fargate task sizes: vCPU -> allowed memory (MiB), from the AWS Batch/ECS Fargate table.
FARGATE_MEMORY_MIB: Mapping[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4097, 1024)),
    1.0: tuple(range(2048, 8193, 1024)),
    2.0: tuple(range(4096, 16385, 1024)),
    4.0: tuple(range(8192, 30721, 1024)),
    8.0: tuple(range(16384, 61441, 4096)),
    16.0: tuple(range(32768, 122881, 8192)),
}

# Interface endpoints the network component knows how to create (service short names).
KNOWN_INTERFACE_ENDPOINTS: tuple[str, ...] = (
    "ecr.api", "ecr.dkr", "logs", "sqs", "sts", "secretsmanager", "ssm", "ssmmessages",
    "ec2messages", "kms", "monitoring", "events", "batch", "ecs", "ecs-agent", "ecs-telemetry",
    "kafka", "rds", "elasticloadbalancing",
)  # fmt: skip
DEFAULT_INTERFACE_ENDPOINTS: tuple[str, ...] = (
    "ecr.api", "ecr.dkr", "logs", "sqs", "sts", "secretsmanager", "ssm",
)  # fmt: skip

# Smallest and largest VPC accepted: the VPC is split into 8 equal blocks (public and private
# subnet for up to 3 AZs, plus spares), and each block must still hold a useful subnet.
VPC_PREFIX_RANGE = (16, 24)
SUBNET_NEWBITS = 3

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,200}$")
_DB_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ARN = re.compile(r"^arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]*):(\d{12}):(.+)$")
_RDS_INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_BATCH_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_SQS_URL = re.compile(
    # https://sqs.<region>.amazonaws.com/<account>/<name>, and the legacy endpoints
    # https://<region>.queue.amazonaws.com/... and https://queue.amazonaws.com/... (us-east-1).
    r"^https://(?:sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"|(?P<legacy>[a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?|queue\.amazonaws\.com)"
    r"/(?P<account>\d{12})/(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)$"
)
_BATCH_JOB_QUEUE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):batch:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"job-queue/(?P<name>[A-Za-z0-9_-]{1,128})$"
)
_BATCH_JOB_DEFINITION_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):batch:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"job-definition/(?P<name>[A-Za-z0-9_-]{1,128}):(?P<revision>[1-9]\d*)$"
)

# A container image reference, as the distribution (Docker) reference grammar defines it:
# [domain[:port]/]path[:tag][@digest], the path made of lowercase components separated by '/'.
_IMAGE_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d+)?)"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:(?P<domain>{_IMAGE_DOMAIN})/)?(?P<path>{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
IMAGE_NAME_MAX = 255
"""The reference grammar's limit on the repository name (domain and path)."""


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


# --------------------------------------------------------------------------------------------
# Errors


def qualified(key: str) -> str:
    """``phase`` -> ``jobstream:phase``; a key that names its namespace (or a pseudo-key in
    parentheses) is shown as it is."""
    return key if ":" in key or key.startswith("(") else f"{NAMESPACE}:{key}"


@dataclass(frozen=True)
class Problem:
    key: str
    value: object
    allowed: str
    related: Mapping[str, object] = field(default_factory=dict)
    """Other keys (and their values) of a cross-key rule: the message names them too."""

    def __str__(self) -> str:
        others = "".join(f" (with {qualified(k)} = {_shown(v)})" for k, v in self.related.items())
        return f"{qualified(self.key)} = {_shown(self.value)}{others}: {self.allowed}"


def _shown(value: object) -> str:
    """A value as the stack file spells it (an enum by its value)."""
    if value is _MISSING:
        return "<missing>"
    return repr(value.value if isinstance(value, StrEnum) else value)


class ConfigError(ValueError):
    """One or more stack config values are invalid; each problem names key, value, allowed.

    ``source`` is the file the values came from (``Pulumi.dev.yaml``) when the caller knows it."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "value" if len(problems) == 1 else "values"
        where = f" in {source}" if source else ""
        super().__init__(
            f"invalid stack configuration{where} ({len(problems)} bad {noun}):\n{lines}"
        )

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.problems]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class _InvalidValueError(Exception):
    """Raised by a parser; carries the 'allowed' text."""


# --------------------------------------------------------------------------------------------
# Parsers: raw Pulumi config strings -> typed values. Pulumi hands every value over as a string;
# objects and lists arrive as JSON.


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise _InvalidValueError(f"must be a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise _InvalidValueError(f"must be a whole number from {lo} to {hi}")
        return value

    parse.__doc__ = f"integer {lo}..{hi}"
    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise _InvalidValueError(f"must be a number from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise _InvalidValueError(f"must be a number from {lo:g} to {hi:g}")
        return value

    parse.__doc__ = f"number {lo:g}..{hi:g}"
    return parse


def _bool(raw: str) -> bool:
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise _InvalidValueError("must be true or false")


_bool.__doc__ = "true / false"


def _choice(enum: type[StrEnum]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return enum(str(raw).strip())
        except ValueError:
            raise _InvalidValueError("must be one of " + ", ".join(m.value for m in enum)) from None

    parse.__doc__ = " / ".join(m.value for m in enum)
    return parse


def _one_of(values: tuple[int, ...], what: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            value = -1
        if value not in values:
            raise _InvalidValueError(f"must be one of the {what}: " + ", ".join(map(str, values)))
        return value

    parse.__doc__ = f"one of the {what}"
    return parse


def _pattern(regex: re.Pattern[str], allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = str(raw).strip()
        if not regex.match(value):
            raise _InvalidValueError(allowed)
        return value

    parse.__doc__ = allowed
    return parse


def _sqs_url(raw: str) -> str:
    """an SQS queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/jobs"""
    value = raw.strip()
    if not _SQS_URL.match(value):
        raise _InvalidValueError(
            "must be an SQS queue URL like https://sqs.<region>.amazonaws.com/<account>/<queue "
            "name> (what `aws sqs get-queue-url` prints)"
        )
    return value


def _batch_arn(kind: str, regex: re.Pattern[str]) -> Callable[[str], str]:
    example = "<name>:<revision>" if kind == "job-definition" else "<name>"

    def parse(raw: str) -> str:
        value = raw.strip()
        if not regex.match(value):
            raise _InvalidValueError(
                f"must be the ARN of an AWS Batch {kind.replace('-', ' ')}: "
                f"arn:aws:batch:<region>:<account>:{kind}/{example}"
            )
        return value

    parse.__doc__ = f"an AWS Batch {kind} ARN (arn:aws:batch:<region>:<account>:{kind}/{example})"
    return parse


def _image(raw: str) -> str:
    allowed = (
        "must be a container image reference registry/repository:tag or "
        "registry/repository@sha256:<digest> (lowercase repository path, an explicit tag or "
        "digest: an untagged reference means :latest, which moves under a running stack)"
    )
    value = str(raw).strip()
    match = _IMAGE.match(value)
    if not value or match is None:
        raise _InvalidValueError(allowed)
    if not (match.group("tag") or match.group("digest")):
        raise _InvalidValueError(allowed)
    name = value.split("@")[0].rsplit(":", 1)[0] if match.group("tag") else value.split("@")[0]
    if len(name) > IMAGE_NAME_MAX:
        raise _InvalidValueError(f"repository name longer than {IMAGE_NAME_MAX} characters")
    return value


_image.__doc__ = "container image registry/repository:tag or @digest"


def _retention_days(raw: str) -> int:
    allowed = f"must be {PERFORMANCE_INSIGHTS_FREE_DAYS} (free tier), 731, or a multiple of 31"
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _InvalidValueError(allowed) from None
    if value not in (PERFORMANCE_INSIGHTS_FREE_DAYS, 731) and (value <= 0 or value % 31):
        raise _InvalidValueError(allowed)
    return value


_retention_days.__doc__ = "7, 731 or a multiple of 31"


def _optional(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        return None if str(raw).strip() == "" else inner(raw)

    parse.__doc__ = f"{inner.__doc__} (optional)"
    return parse


def _cidr(raw: str) -> str:
    lo, hi = VPC_PREFIX_RANGE
    allowed = f"must be a private IPv4 network in CIDR form, /{lo} to /{hi} (e.g. 10.0.0.0/16)"
    try:
        network = ipaddress.IPv4Network(str(raw).strip(), strict=True)
    except ValueError:
        raise _InvalidValueError(allowed) from None
    if not network.is_private or not lo <= network.prefixlen <= hi:
        raise _InvalidValueError(allowed)
    return str(network)


_cidr.__doc__ = f"IPv4 CIDR /{VPC_PREFIX_RANGE[0]}../{VPC_PREFIX_RANGE[1]}"


def _endpoint_list(raw: str) -> tuple[str, ...]:
    allowed = "must be a JSON list of interface endpoint services from: " + ", ".join(
        KNOWN_INTERFACE_ENDPOINTS
    )
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise _InvalidValueError(allowed) from None
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v in KNOWN_INTERFACE_ENDPOINTS for v in value
    ):
        raise _InvalidValueError(allowed)
    if len(set(value)) != len(value):
        raise _InvalidValueError("must not name a service twice")
    return tuple(value)


_endpoint_list.__doc__ = "list of service names"


def _string_list(
    item: re.Pattern[str], what: str, *, allow_empty: bool = False
) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        allowed = f"must be a {'' if allow_empty else 'non-empty '}JSON list of {what}"
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            raise _InvalidValueError(allowed) from None
        if not isinstance(value, list) or (not value and not allow_empty):
            raise _InvalidValueError(allowed)
        if not all(isinstance(v, str) and item.match(v) for v in value):
            raise _InvalidValueError(allowed)
        return tuple(value)

    parse.__doc__ = f"list of {what}"
    return parse


# --------------------------------------------------------------------------------------------
# The declaration of every key.


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    section: str
    required: bool = False

    @property
    def allowed(self) -> str:
        return self.parse.__doc__ or ""


def _k(section: str) -> Callable[..., Key]:
    def make(name: str, parse: Callable[[str], Any], default: Any, help: str, **kw: Any) -> Key:
        return Key(name, parse, default, help, section, **kw)

    return make


_general, _net, _sqs = _k("General"), _k("Network"), _k("SQS job queue")
_db, _batch, _kafka = _k("Database and RDS Proxy"), _k("AWS Batch"), _k("Kafka (MSK)")
_svc, _mon = _k("Kafka consumer service (ECS)"), _k("Monitoring and migration triggers")
_adopt = _k("Adoption of running resources")

_GB = 1024

KEYS: tuple[Key, ...] = (
    _general("phase", _int(PHASES[0], PHASES[-1]), _MISSING, "Migration phase in force (see the phase table).", required=True),
    _general("confirmCleanup", _bool, False, "Must be true to allow phase 5, which deletes the SQS and Batch resources."),
    _general("environment", _choice(Environment), None, "Environment class; defaults to the stack name when that is dev, staging or prod."),
    _general("protectStatefulResources", _bool, None, "Protect the database, proxy, queues and MSK cluster from deletion; defaults to true in prod."),
    _general(ESCAPE_KEY, _bool, False, "Accept a value missing from the known lists in infra/known_values.json (MSK broker types, Kafka versions, PostgreSQL majors, regions, reserved user names)."),
    _general("logRetentionDays", _one_of(LOG_RETENTION_DAYS, "CloudWatch Logs retention periods"), 30, "Retention of application, broker and job logs."),
    _net("vpcCidr", _cidr, "10.0.0.0/16", "VPC CIDR; subnets are computed from it (8 equal blocks)."),
    _net("azCount", _int(2, 3), 2, "Availability zones used."),
    _net("natStrategy", _choice(NatStrategy), NatStrategy.SINGLE, "NAT gateways: none, one for the VPC, or one per AZ."),
    _net("allowReducedNat", _bool, False, "Allow prod to run with fewer NAT gateways than AZs."),
    _net("interfaceEndpoints", _endpoint_list, DEFAULT_INTERFACE_ENDPOINTS, "Interface VPC endpoints (JSON list of service names)."),
    _net("flowLogRetentionDays", _one_of(LOG_RETENTION_DAYS, "CloudWatch Logs retention periods"), 30, "Retention of VPC flow logs."),
    _sqs("queueVisibilityTimeoutSeconds", _int(*SQS_VISIBILITY_RANGE), 3600, "Visibility timeout; must be >= jobTimeoutSeconds."),
    _sqs("queueRetentionSeconds", _int(*SQS_RETENTION_RANGE), 345_600, "Message retention of the job queue."),
    _sqs("dlqRetentionSeconds", _int(*SQS_RETENTION_RANGE), 1_209_600, "Message retention of the DLQ; must be >= queueRetentionSeconds."),
    _sqs("maxReceiveCount", _int(1, 1000), 5, "Receives before a message moves to the DLQ."),
    _sqs("queueKmsKeyArn", _optional(_pattern(_ARN, "must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")), None, "KMS key for the queues (in aws:region); SQS-managed encryption when unset."),
    _db("dbInstanceClass", _pattern(re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$"), "must be an RDS instance class like db.t4g.micro"), "db.t4g.micro", "RDS instance class."),
    _db("dbEngineVersion", _pattern(re.compile(r"^\d+(\.\d+)?$"), "must be a PostgreSQL major version like 16 (or a minor like 16.4)"), "16", "PostgreSQL engine version: the major only while dbAutoMinorVersionUpgrade is on (RDS picks and upgrades the minor)."),
    _db("dbAutoMinorVersionUpgrade", _bool, True, "Let RDS apply minor engine upgrades in the maintenance window."),
    _db("dbAllocatedStorageGb", _int(20, 65_536), 20, "Initial storage (GiB)."),
    _db("dbMaxAllocatedStorageGb", _int(20, 65_536), 100, "Storage autoscaling ceiling (GiB); >= dbAllocatedStorageGb."),
    _db("dbName", _pattern(_DB_IDENTIFIER, "must be a lowercase identifier (letters, digits, _)"), "jobstream", "Database name."),
    _db("dbMasterUsername", _pattern(_DB_IDENTIFIER, "must be a lowercase identifier (letters, digits, _)"), "jobstream_admin", "Master user (password managed by RDS in Secrets Manager)."),
    _db("dbAppUsername", _pattern(_DB_IDENTIFIER, "must be a lowercase identifier (letters, digits, _)"), "jobstream_app", "Database user the jobs connect as (IAM auth through the proxy)."),
    _db("dbMultiAz", _bool, False, "Multi-AZ deployment."),
    _db("dbDeletionProtection", _bool, None, "Deletion protection and a final snapshot; defaults to true in prod."),
    _db("dbBackupRetentionDays", _int(1, 35), 7, "Automated backup retention."),
    _db("dbPerformanceInsights", _bool, None, "Performance Insights on the instance; defaults to true in prod."),
    _db("dbPerformanceInsightsRetentionDays", _retention_days, PERFORMANCE_INSIGHTS_FREE_DAYS, "Performance Insights retention (7 days is the free tier)."),
    _db("existingDbInstanceId", _optional(_pattern(_RDS_INSTANCE_ID, "must be an RDS instance identifier")), None, "Front an existing RDS instance instead of creating one."),
    _db("proxyMaxConnectionsPercent", _int(1, 100), 90, "RDS Proxy pool: max connections (% of max_connections)."),
    _db("proxyMaxIdleConnectionsPercent", _int(0, 100), 50, "RDS Proxy pool: max idle connections (%); <= proxyMaxConnectionsPercent."),
    _db("proxyConnectionBorrowTimeoutSeconds", _int(0, 3600), 120, "RDS Proxy: wait for a free connection (s)."),
    _db("proxyIdleClientTimeoutSeconds", _int(1, 28_800), 1800, "RDS Proxy: close idle client connections after (s)."),
    _batch("image", _image, _MISSING, "ML container image (used by Batch and the Kafka consumer).", required=True),
    _batch("computeType", _choice(ComputeType), ComputeType.FARGATE, "Batch compute: FARGATE, FARGATE_SPOT or EC2 SPOT."),
    _batch("batchMaxVcpus", _int(1, 4096), 16, "Compute environment ceiling (vCPU)."),
    _batch("spotInstanceTypes", _string_list(re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)?$"), "EC2 instance types"), ("m6i.large", "m5.large"), "EC2 instance types for SPOT compute."),
    _batch("jobVcpu", _float(0.25, 16), 1.0, "vCPU per job."),
    _batch("jobMemoryMib", _int(512, 122_880), 2048, "Memory per job (MiB); a valid Fargate size for jobVcpu."),
    _batch("jobTimeoutSeconds", _int(*BATCH_JOB_TIMEOUT_RANGE), 1800, "Attempt timeout of one job."),
    _batch("jobAttempts", _int(1, 10), 3, "Attempts per job (retries on infrastructure failures only)."),
    _batch("expectedJobsPerDay", _int(0, 100_000_000), 2000, "Expected load, for the cost estimate."),
    _batch("expectedJobSeconds", _int(1, 86_400), 120, "Expected run time of one job, for the cost estimate."),
    _kafka("kafka", _choice(TopicManager), TopicManager.AWS, "Topic manager: aws (aws.msk.Topic, control plane) or kafka (pulumi-kafka, needs broker reach)."),
    _kafka("kafkaMode", _choice(KafkaMode), KafkaMode.PROVISIONED, "MSK provisioned or serverless (IAM only)."),
    _kafka("kafkaVersion", _pattern(re.compile(r"^\d+\.\d+\.\d+(\.x)?(\.kraft)?$"), "must be an MSK Kafka version like 3.8.x"), "3.8.x", "Kafka version (provisioned); 3.6.0 or later for the aws topic manager."),
    _kafka("kafkaInstanceType", _pattern(re.compile(r"^kafka\.[a-z0-9]+\.[a-z0-9]+$"), "must be an MSK broker type like kafka.m7g.large"), "kafka.t3.small", "Broker instance type."),
    _kafka("kafkaBrokerCount", _int(1, 30), 2, "Brokers; a multiple of azCount."),
    _kafka("kafkaVolumeSizeGb", _int(1, 16_384), 100, "Initial EBS volume per broker (GiB)."),
    _kafka("kafkaMaxVolumeSizeGb", _int(1, 16_384), 500, "Storage auto scaling ceiling per broker (GiB)."),
    _kafka("kafkaStorageTargetPercent", _int(10, 80), 60, "Storage auto scaling target utilisation (%)."),
    _kafka("kafkaEnhancedMonitoring", _choice(EnhancedMonitoring), EnhancedMonitoring.PER_TOPIC_PER_BROKER, "MSK enhanced monitoring level."),
    _kafka("topicName", _pattern(_RESOURCE_NAME, "must be a Kafka topic name (letters, digits, . _ -)"), "jobstream.jobs", "Jobs topic; the dead-letter topic is <topicName>.dlq."),
    _kafka("topicPartitions", _int(1, 1000), 6, "Partitions of the jobs topic."),
    _kafka("topicReplicationFactor", _int(1, 5), 2, "Replication factor; <= kafkaBrokerCount."),
    _kafka("topicMinInsyncReplicas", _int(1, 4), 1, "min.insync.replicas; < topicReplicationFactor."),
    _kafka("topicRetentionHours", _int(1, 8760), 168, "Retention of the jobs topic."),
    _kafka("deadLetterRetentionHours", _int(1, 8760), 336, "Retention of the dead-letter topic."),
    _kafka("consumerGroup", _pattern(_RESOURCE_NAME, "must be a consumer group name (letters, digits, . _ -)"), "jobstream-ml", "Consumer group of the ML service."),
    _kafka("producerSecurityGroupIds", _string_list(re.compile(r"^sg-[0-9a-f]{8,17}$"), "security group ids (sg-...)", allow_empty=True), (), "Security groups of the producers (outside this stack) admitted to the brokers."),
    _svc("consumerDesiredCount", _int(0, 100), 1, "Tasks of the Kafka consumer service."),
    _svc("consumerMinCount", _int(0, 100), 1, "Auto scaling floor."),
    _svc("consumerMaxCount", _int(1, 100), 4, "Auto scaling ceiling; <= topicPartitions (more tasks would idle)."),
    _svc("consumerCpu", _one_of((256, 512, 1024, 2048, 4096, 8192, 16384), "Fargate CPU units"), 1024, "CPU units per task."),
    _svc("consumerMemoryMib", _int(512, 122_880), 2048, "Memory per task (MiB); a valid Fargate size for consumerCpu."),
    _svc("consumerLagTargetPerTask", _int(1, 1_000_000), 1000, "Target-tracking: offset lag per task (used where MSK publishes lag)."),
    _svc("consumerCpuTargetPercent", _int(10, 95), 60, "Target-tracking: CPU utilisation (the only policy on serverless clusters, the backstop of the lag policy on provisioned ones)."),
    _mon("alertEmail", _pattern(_EMAIL, "must be an e-mail address like ops@example.com"), _MISSING, "Address subscribed to the alert topic.", required=True),
    _mon("queueDepthThreshold", _int(1, 10_000_000), 1000, "Alarm: visible messages in the job queue."),
    _mon("queueAgeThresholdSeconds", _int(1, 1_209_600), 900, "Alarm: age of the oldest job in the queue."),
    _mon("consumerLagThreshold", _int(1, 100_000_000), 10_000, "Alarm: Kafka consumer lag of the ML group."),
    _mon("mskCpuThresholdPercent", _int(1, 100), 60, "Alarm: broker CPU user + system."),
    _mon("mskDiskThresholdPercent", _int(1, 100), 80, "Alarm: broker data-log disk used."),
    _mon("rdsCpuThresholdPercent", _int(1, 100), 80, "Alarm: database CPU."),
    _mon("rdsFreeStorageThresholdGb", _int(1, 65_536), 5, "Alarm: database free storage below (GiB)."),
    _mon("triggerJobsPerDay", _int(1, 1_000_000_000), 10_000, "Migration trigger: jobs per day ..."),
    _mon("triggerSustainedDays", _int(1, 7), 7, "... sustained for this many consecutive days (a CloudWatch alarm evaluates at most 7 days)."),
    _mon("triggerLatencySeconds", _float(0.001, 86_400), 1.0, "Migration trigger: the 5-minute maximum age of the oldest job above this ..."),
    _mon("triggerLatencyBreachPercent", _float(0.1, 100), 1.0, "... in at least this share (%) of the last day's 5-minute periods (1 = the p99 of the 5-minute maxima)."),
    _adopt("adoptJobQueueUrl", _optional(_sqs_url), None, "Import this running SQS job queue (its URL) instead of creating one; `jobstream adopt` writes it and the settings that match it."),
    _adopt("adoptDeadLetterQueueUrl", _optional(_sqs_url), None, "Import this running SQS queue (its URL) as the dead-letter queue."),
    _adopt("adoptBatchComputeEnvironment", _optional(_pattern(_BATCH_NAME, "must be an AWS Batch compute environment name (up to 128 letters, digits, - and _)")), None, "Import this running Batch compute environment (its name)."),
    _adopt("adoptBatchJobQueueArn", _optional(_batch_arn("job-queue", _BATCH_JOB_QUEUE_ARN)), None, "Import this running Batch job queue (its ARN)."),
    _adopt("adoptBatchJobDefinitionArn", _optional(_batch_arn("job-definition", _BATCH_JOB_DEFINITION_ARN)), None, "Import this Batch job definition (its ARN with the revision); the first `pulumi up` registers the stack's revision of it."),
)  # fmt: skip

KEYS_BY_NAME: Mapping[str, Key] = {k.name: k for k in KEYS}


# --------------------------------------------------------------------------------------------
# The typed configuration.


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str
    az_count: int
    nat_strategy: NatStrategy
    interface_endpoints: tuple[str, ...]
    flow_log_retention_days: int


@dataclass(frozen=True)
class QueueConfig:
    visibility_timeout_seconds: int
    retention_seconds: int
    dlq_retention_seconds: int
    max_receive_count: int
    kms_key_arn: str | None


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str
    engine_version: str
    auto_minor_version_upgrade: bool
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    name: str
    master_username: str
    app_username: str
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int
    performance_insights: bool
    performance_insights_retention_days: int
    existing_instance_id: str | None
    proxy_max_connections_percent: int
    proxy_max_idle_connections_percent: int
    proxy_connection_borrow_timeout_seconds: int
    proxy_idle_client_timeout_seconds: int


@dataclass(frozen=True)
class BatchConfig:
    image: str
    compute_type: ComputeType
    max_vcpus: int
    spot_instance_types: tuple[str, ...]
    job_vcpu: float
    job_memory_mib: int
    job_timeout_seconds: int
    job_attempts: int
    expected_jobs_per_day: int
    expected_job_seconds: int


@dataclass(frozen=True)
class KafkaConfig:
    topic_manager: TopicManager
    mode: KafkaMode
    version: str
    instance_type: str
    broker_count: int
    volume_size_gb: int
    max_volume_size_gb: int
    storage_target_percent: int
    enhanced_monitoring: EnhancedMonitoring
    topic_name: str
    topic_partitions: int
    replication_factor: int
    min_insync_replicas: int
    topic_retention_hours: int
    dead_letter_retention_hours: int
    consumer_group: str
    producer_security_group_ids: tuple[str, ...] = ()

    @property
    def dead_letter_topic_name(self) -> str:
        return f"{self.topic_name}.dlq"


@dataclass(frozen=True)
class ConsumerServiceConfig:
    desired_count: int
    min_count: int
    max_count: int
    cpu: int
    memory_mib: int
    lag_target_per_task: int
    cpu_target_percent: int


@dataclass(frozen=True)
class MonitoringConfig:
    alert_email: str
    queue_depth_threshold: int
    queue_age_threshold_seconds: int
    consumer_lag_threshold: int
    msk_cpu_threshold_percent: int
    msk_disk_threshold_percent: int
    rds_cpu_threshold_percent: int
    rds_free_storage_threshold_gb: int
    trigger_jobs_per_day: int
    trigger_sustained_days: int
    trigger_latency_seconds: float
    trigger_latency_breach_percent: float


@dataclass(frozen=True)
class AdoptionConfig:
    """Physical ids of running resources the stack imports instead of creating (Pulumi's
    ``import`` resource option): each as the provider's import id for its type."""

    job_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    batch_compute_environment: str | None = None
    batch_job_queue_arn: str | None = None
    batch_job_definition_arn: str | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def names(self, stack: str) -> Names:
        """The stack's names, the adopted resources' own names in place of derived ones."""
        return Names(stack).adopting(
            job_queue=_queue_name(self.job_queue_url),
            dead_letter_queue=_queue_name(self.dead_letter_queue_url),
            batch_compute_environment=self.batch_compute_environment,
            batch_job_queue=_arn_name(self.batch_job_queue_arn, _BATCH_JOB_QUEUE_ARN),
            batch_job_definition=_arn_name(
                self.batch_job_definition_arn, _BATCH_JOB_DEFINITION_ARN
            ),
        )


ADOPTION_KEYS: Mapping[str, str] = {
    "adoptJobQueueUrl": "job_queue_url",
    "adoptDeadLetterQueueUrl": "dead_letter_queue_url",
    "adoptBatchComputeEnvironment": "batch_compute_environment",
    "adoptBatchJobQueueArn": "batch_job_queue_arn",
    "adoptBatchJobDefinitionArn": "batch_job_definition_arn",
}
"""Config key -> ``AdoptionConfig`` field."""


def _queue_name(url: str | None) -> str | None:
    match = _SQS_URL.match(url) if url else None
    return match["name"] if match else None


def _arn_name(arn: str | None, regex: re.Pattern[str]) -> str | None:
    match = regex.match(arn) if arn else None
    return match["name"] if match else None


def stack_names(stack: str, raw: Mapping[str, str]) -> Names:
    """The names of a stack from its flat config, reading only the adoption keys (for the
    commands that need names but not the whole config); a bad adoption value is skipped here,
    the full ``parse`` reports it."""
    values: dict[str, str | None] = {}
    for key, attribute in ADOPTION_KEYS.items():
        given = raw.get(f"{NAMESPACE}:{key}")
        try:
            values[attribute] = KEYS_BY_NAME[key].parse(given) if given else None
        except _InvalidValueError:
            values[attribute] = None
    return AdoptionConfig(**values).names(stack)


@dataclass(frozen=True)
class StackConfig:
    project: str
    stack: str
    region: str
    environment: Environment
    phase: int
    cleanup_confirmed: bool
    protect_stateful: bool
    log_retention_days: int
    network: NetworkConfig
    queue: QueueConfig
    database: DatabaseConfig
    batch: BatchConfig
    kafka: KafkaConfig
    consumer: ConsumerServiceConfig
    monitoring: MonitoringConfig
    adoption: AdoptionConfig = field(default_factory=AdoptionConfig)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> Names:
        """The physical names of the stack's resources (adopted ones keep their own)."""
        return self.adoption.names(self.stack)

    @property
    def is_prod(self) -> bool:
        return self.environment is Environment.PROD

    @property
    def default_tags(self) -> dict[str, str]:
        # The phase is deliberately not a tag: every phase change would touch every resource.
        return {
            "Project": self.project,
            "Environment": self.environment.value,
            "ManagedBy": "pulumi",
        }


# --------------------------------------------------------------------------------------------
# Loading.


def parse(
    raw: Mapping[str, str],
    *,
    stack: str,
    project: str = "jobstream",
    source: str | None = None,
) -> StackConfig:
    """Build a ``StackConfig`` from flat Pulumi config (``{"jobstream:phase": "3", ...}``).

    Raises ``ConfigError`` listing every bad, missing or unknown key; ``source`` (the stack
    file's name) is named in its message.
    """
    problems: list[Problem] = []
    prefix = f"{NAMESPACE}:"
    given = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

    problems += _namespace_problems(raw)
    for name in sorted(set(given) - set(KEYS_BY_NAME)):
        close = difflib.get_close_matches(name, KEYS_BY_NAME, n=1)
        hint = f"; did you mean {NAMESPACE}:{close[0]}?" if close else ""
        problems.append(Problem(name, given[name], f"is not a known key{hint}"))

    values: dict[str, Any] = {}
    for key in KEYS:
        if key.name not in given:
            if key.required:
                problems.append(Problem(key.name, _MISSING, f"is required ({key.help})"))
            values[key.name] = key.default
            continue
        try:
            values[key.name] = key.parse(given[key.name])
        except _InvalidValueError as bad:
            problems.append(Problem(key.name, given[key.name], str(bad)))
            values[key.name] = _MISSING

    region = str(raw.get("aws:region", "")).strip()
    if not _REGION.match(region):
        problems.append(
            Problem(
                "(aws:region)",
                region or _MISSING,
                "aws:region must be set to an AWS region like us-east-1",
            )
        )
        region = ""

    if values["environment"] is None:
        try:
            values["environment"] = Environment(stack)
        except ValueError:
            problems.append(
                Problem(
                    "environment",
                    _MISSING,
                    f"is required when the stack name ({stack!r}) is not dev, staging or prod",
                )
            )
            values["environment"] = _MISSING

    problems += _stack_name_problems(stack)
    unlisted_ok = values[ESCAPE_KEY] is True
    problems += _unlisted_values(values, region, unlisted_ok=unlisted_ok)
    if region:
        problems += _arn_problems(values, region)
        problems += _adoption_problems(values, region)
    if not problems:
        problems.extend(_cross_checks(values))
    if problems:
        raise ConfigError(problems, source=source)
    return _build(values, stack=stack, project=project, region=region)


def _namespace_problems(raw: Mapping[str, str]) -> list[Problem]:
    """A key under a namespace close to ``jobstream`` (``jobsteam:phase``) would be ignored
    silently: the program reads its own namespace only. Other namespaces (another provider's)
    are not this program's to judge."""
    out: list[Problem] = []
    for key in sorted(raw):
        namespace, sep, _name = key.partition(":")
        if not sep or namespace in NAMESPACES:
            continue
        if difflib.get_close_matches(namespace.lower(), [NAMESPACE], n=1, cutoff=0.7):
            out.append(
                Problem(
                    key,
                    raw[key],
                    f"namespace {namespace!r} is not one this program reads (did you mean "
                    f"{NAMESPACE}:{_name}?); its namespaces are " + ", ".join(NAMESPACES),
                )
            )
    return out


def _stack_name_problems(stack: str) -> list[Problem]:
    """Every name derived from the stack name (``jobstream.contract.names``) against the rule of
    the service that takes it."""
    found = name_problems(stack)
    if not found:
        return []
    longest = longest_stack_name()
    details = "; ".join(f"{kind} {value!r}: {why}" for kind, value, why in found)
    return [
        Problem(
            "(stack name)",
            stack,
            f"derives AWS names that their services refuse ({details}); use a stack name of "
            f"letters, digits and single hyphens, starting with a letter, at most {longest} "
            "characters",
        )
    ]


@dataclass(frozen=True)
class KnownList:
    values: frozenset[str]
    prefixes: tuple[str, ...]
    source: str
    compiled: str

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (value in self.values or value.startswith(self.prefixes))


@cache
def known_values() -> Mapping[str, KnownList]:
    """infra/known_values.json: the lists of values that exist, with source and date."""
    document = json.loads(resources.files("infra").joinpath("known_values.json").read_text())
    return {
        name: KnownList(
            frozenset(entry["values"]),
            tuple(entry.get("prefixes", ())),
            entry["source"],
            entry["compiled"],
        )
        for name, entry in document.items()
        if isinstance(entry, dict)
    }


# (key, known list, what the list holds); "(aws:region)" is the provider's key.
_KNOWN_KEYS: tuple[tuple[str, str, str], ...] = (
    ("kafkaInstanceType", "mskInstanceTypes", "MSK Standard broker types"),
    ("kafkaVersion", "mskKafkaVersions", "Kafka versions MSK offers"),
    ("dbEngineVersion", "rdsPostgresMajors", "PostgreSQL major versions RDS offers"),
    ("(aws:region)", "awsRegions", "AWS regions"),
)
_RESERVED_USER_KEYS: tuple[str, ...] = ("dbMasterUsername", "dbAppUsername")


def _unlisted_values(v: Mapping[str, Any], region: str, *, unlisted_ok: bool) -> list[Problem]:
    """Values that match their pattern but name nothing that exists (a broker type, a version,
    a region); ``jobstream:allowUnlistedValues`` accepts them."""
    lists = known_values()
    out: list[Problem] = []
    escape = f"set {NAMESPACE}:{ESCAPE_KEY} to true to accept a value this list does not know yet"
    for key, list_name, what in _KNOWN_KEYS:
        value = region if key == "(aws:region)" else v[key]
        if value is _MISSING or not value:
            continue
        if key == "dbEngineVersion":
            value = str(value).split(".")[0]
        known = lists[list_name]
        if value in known or unlisted_ok:
            continue
        shown = ", ".join(sorted(known.values))
        out.append(
            Problem(
                key,
                region if key == "(aws:region)" else v[key],
                f"is not one of the {what} known on {known.compiled} ({shown}; source: "
                f"infra/known_values.json {list_name}); {escape}",
            )
        )
    reserved = lists["postgresReservedUsernames"]
    for key in _RESERVED_USER_KEYS:
        value = v[key]
        if value is _MISSING:
            continue
        # Reserved words are refused by the engine itself: no escape.
        if value in reserved:
            out.append(
                Problem(
                    key,
                    value,
                    "is a name PostgreSQL or RDS reserves (an SQL reserved word, public/none, "
                    f"or a name starting with {' or '.join(reserved.prefixes)}); choose another "
                    "user name",
                )
            )
    master = v["dbMasterUsername"]
    if master is not _MISSING and len(master) > RDS_MASTER_USERNAME_MAX:
        out.append(
            Problem(
                "dbMasterUsername",
                master,
                f"is longer than the {RDS_MASTER_USERNAME_MAX} characters RDS allows for the "
                "master user (CreateDBInstance MasterUsername)",
            )
        )
    return out


def _arn_problems(v: Mapping[str, Any], region: str) -> list[Problem]:
    """ARN-valued keys: the right service, resource type and region for what they configure."""
    out: list[Problem] = []
    for key, user in (("queueKmsKeyArn", "SQS"),):
        arn = v[key]
        if arn in (None, _MISSING):
            continue
        match = _ARN.match(arn)
        assert match is not None  # the key's parser checked the pattern
        partition, service, arn_region, _account, resource = match.groups()
        expected = f"arn:{_partition(region)}:kms:{region}:<account>:key/<key id>"
        if service != "kms" or not resource.startswith("key/"):
            out.append(
                Problem(
                    key,
                    arn,
                    f"is an ARN of {service} {resource.split('/')[0]!r}, not of a KMS key: must "
                    f"be {expected}",
                )
            )
        elif arn_region != region or partition != _partition(region):
            out.append(
                Problem(
                    key,
                    arn,
                    f"is a key in {arn_region} ({partition}); {user} uses keys of its own "
                    f"region only: must be {expected}",
                    related={"(aws:region)": region},
                )
            )
    return out


def _adoption_problems(v: Mapping[str, Any], region: str) -> list[Problem]:
    """What an import needs of the adoption keys: ids in the stack's region and account, the
    queues standard and distinct."""
    out: list[Problem] = []
    accounts: dict[str, str] = {}
    located: list[tuple[str, str | None, str]] = []
    for key in ("adoptJobQueueUrl", "adoptDeadLetterQueueUrl"):
        url = v[key]
        if url in (None, _MISSING):
            continue
        match = _SQS_URL.match(url)
        assert match is not None  # the key's parser checked the pattern
        url_region = match["region"] or match["legacy"] or "us-east-1"
        located.append((key, url_region, match["account"]))
        if match["name"].endswith(".fifo"):
            out.append(
                Problem(
                    key,
                    url,
                    "is a FIFO queue; the stack's queues are standard queues and fifo_queue "
                    "cannot change without a new queue (adopt a standard queue)",
                )
            )
    for key, regex in (
        ("adoptBatchJobQueueArn", _BATCH_JOB_QUEUE_ARN),
        ("adoptBatchJobDefinitionArn", _BATCH_JOB_DEFINITION_ARN),
    ):
        arn = v[key]
        if arn in (None, _MISSING):
            continue
        match = regex.match(arn)
        assert match is not None
        located.append((key, match["region"], match["account"]))
    for key, id_region, account in located:
        if id_region != region:
            out.append(
                Problem(
                    key,
                    v[key],
                    f"names a resource in {id_region}; a stack imports resources of its own "
                    f"region only ({region})",
                    related={"(aws:region)": region},
                )
            )
        first = next(iter(accounts.items()), None)
        if first is not None and first[1] != account:
            out.append(
                Problem(
                    key,
                    v[key],
                    f"is in account {account}, {first[0]} in account {first[1]}: one stack "
                    "manages one account",
                    related={first[0]: v[first[0]]},
                )
            )
        accounts.setdefault(key, account)
    jobs, dead = v["adoptJobQueueUrl"], v["adoptDeadLetterQueueUrl"]
    if jobs and dead and jobs == dead:
        out.append(
            Problem(
                "adoptDeadLetterQueueUrl",
                dead,
                "is the job queue itself: the dead-letter queue must be another queue",
                related={"adoptJobQueueUrl": jobs},
            )
        )
    return out


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _version(text: str) -> tuple[int, ...]:
    """``3.6.0`` -> (3, 6, 0); ``3.9.x.kraft`` -> (3, 9)."""
    parts: list[int] = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def _cross_checks(v: Mapping[str, Any]) -> list[Problem]:
    """Rules that relate several keys; only run once every key parsed on its own. Each problem
    is reported on the key to change, with the other keys of the rule named beside it."""
    out: list[Problem] = []

    def bad(key: str, allowed: str, *others: str) -> None:
        out.append(Problem(key, v[key], allowed, related={k: v[k] for k in others}))

    if v["phase"] == CLEANUP_PHASE and not v["confirmCleanup"]:
        bad(
            "phase",
            f"phase {CLEANUP_PHASE} deletes the SQS queues, the pipe and the Batch resources; "
            f"set {NAMESPACE}:confirmCleanup to true in this stack to allow it",
        )
    prod = v["environment"] is Environment.PROD
    if prod and v["natStrategy"] is not NatStrategy.PER_AZ and not v["allowReducedNat"]:
        bad(
            "natStrategy",
            f"prod needs one NAT gateway per AZ (per-az); set {NAMESPACE}:allowReducedNat to "
            "true to accept less",
        )
    # The guardrails of DESIGN.md (stateful resources protected in prod, deletion protection):
    # no escape key, because `pulumi destroy` does not run the program (a decommission turns
    # protection off out of band, see docs/operations.md), and every `pulumi up` must keep them.
    for key in ("protectStatefulResources", "dbDeletionProtection"):
        if prod and v[key] is False:
            bad(
                key,
                "must not be false in prod: the guardrails keep the database, proxy, queues and "
                "MSK cluster from being deleted (leave it unset or true; to decommission, see "
                "docs/operations.md)",
                "environment",
            )
    if v["kafka"] is TopicManager.AWS:
        if v["kafkaMode"] is KafkaMode.SERVERLESS:
            bad(
                "kafka",
                "the aws topic manager uses the MSK topic APIs, which are not available for "
                "MSK Serverless clusters: set jobstream:kafka to kafka (pulumi-kafka) or "
                "jobstream:kafkaMode to provisioned",
                "kafkaMode",
            )
        elif _version(v["kafkaVersion"]) < MSK_TOPIC_API_MIN_VERSION:
            bad(
                "kafka",
                "the aws topic manager uses the MSK topic APIs, which need Apache Kafka 3.6.0 "
                "or later: set jobstream:kafkaVersion to 3.6.0 or later, or jobstream:kafka to "
                "kafka (pulumi-kafka)",
                "kafkaVersion",
            )
    if v["kafkaMode"] is KafkaMode.PROVISIONED:
        if v["kafkaBrokerCount"] % v["azCount"] != 0:
            bad("kafkaBrokerCount", f"must be a multiple of azCount ({v['azCount']})", "azCount")
        if v["topicReplicationFactor"] > v["kafkaBrokerCount"]:
            bad(
                "topicReplicationFactor",
                f"must be <= kafkaBrokerCount ({v['kafkaBrokerCount']})",
                "kafkaBrokerCount",
            )
        if v["kafkaMaxVolumeSizeGb"] < v["kafkaVolumeSizeGb"]:
            bad(
                "kafkaMaxVolumeSizeGb",
                f"must be >= kafkaVolumeSizeGb ({v['kafkaVolumeSizeGb']})",
                "kafkaVolumeSizeGb",
            )
    if v["topicMinInsyncReplicas"] >= v["topicReplicationFactor"]:
        bad(
            "topicMinInsyncReplicas",
            f"must be < topicReplicationFactor ({v['topicReplicationFactor']}) so that one "
            "replica can be down without stopping producers",
            "topicReplicationFactor",
        )
    if v["queueVisibilityTimeoutSeconds"] < v["jobTimeoutSeconds"]:
        bad(
            "queueVisibilityTimeoutSeconds",
            f"must be >= jobTimeoutSeconds ({v['jobTimeoutSeconds']}), or a running job's "
            "message becomes visible again and runs twice",
            "jobTimeoutSeconds",
        )
    if v["dlqRetentionSeconds"] < v["queueRetentionSeconds"]:
        bad(
            "dlqRetentionSeconds",
            f"must be >= queueRetentionSeconds ({v['queueRetentionSeconds']}); a moved message "
            "keeps its original enqueue time",
            "queueRetentionSeconds",
        )
    if v["dbMaxAllocatedStorageGb"] < v["dbAllocatedStorageGb"]:
        bad(
            "dbMaxAllocatedStorageGb",
            f"must be >= dbAllocatedStorageGb ({v['dbAllocatedStorageGb']})",
            "dbAllocatedStorageGb",
        )
    if v["dbAutoMinorVersionUpgrade"] and "." in v["dbEngineVersion"]:
        bad(
            "dbEngineVersion",
            "pins a minor version while RDS applies minor upgrades (dbAutoMinorVersionUpgrade "
            "is true): after RDS upgrades the instance every `pulumi up` would plan a downgrade "
            f"that RDS refuses. Give the major only ({v['dbEngineVersion'].split('.')[0]}; the "
            "provider keeps it without a diff and reports the running version in "
            "engine_version_actual), or set dbAutoMinorVersionUpgrade to false",
            "dbAutoMinorVersionUpgrade",
        )
    if v["proxyMaxIdleConnectionsPercent"] > v["proxyMaxConnectionsPercent"]:
        bad(
            "proxyMaxIdleConnectionsPercent",
            f"must be <= proxyMaxConnectionsPercent ({v['proxyMaxConnectionsPercent']})",
            "proxyMaxConnectionsPercent",
        )
    if v["computeType"] in (ComputeType.FARGATE, ComputeType.FARGATE_SPOT):
        out.extend(_fargate_size(v, "jobVcpu", "jobMemoryMib", v["jobVcpu"]))
    # The consumer always runs on Fargate; its CPU is in units (1024 = 1 vCPU).
    out.extend(_fargate_size(v, "consumerCpu", "consumerMemoryMib", v["consumerCpu"] / 1024))
    if v["consumerMinCount"] > v["consumerMaxCount"]:
        bad(
            "consumerMinCount",
            f"must be <= consumerMaxCount ({v['consumerMaxCount']}): the auto scaling floor "
            "lies above its ceiling",
            "consumerMaxCount",
        )
    elif not v["consumerMinCount"] <= v["consumerDesiredCount"] <= v["consumerMaxCount"]:
        bad(
            "consumerDesiredCount",
            f"must lie within consumerMinCount..consumerMaxCount ({v['consumerMinCount']}.."
            f"{v['consumerMaxCount']})",
            "consumerMinCount",
            "consumerMaxCount",
        )
    if v["consumerMaxCount"] > v["topicPartitions"]:
        bad(
            "consumerMaxCount",
            f"must be <= topicPartitions ({v['topicPartitions']}); extra consumers would idle",
            "topicPartitions",
        )
    return out


def _fargate_size(
    v: Mapping[str, Any], cpu_key: str, memory_key: str, vcpu: float
) -> list[Problem]:
    """Fargate accepts only the CPU/memory pairs of its table (ECS RegisterTaskDefinition
    memory; AWS Batch uses the same table for Fargate jobs)."""
    sizes: tuple[int, ...] | None = FARGATE_MEMORY_MIB.get(vcpu)
    if sizes is None:
        return [
            Problem(
                cpu_key,
                v[cpu_key],
                "must be a Fargate size: " + ", ".join(f"{c:g}" for c in FARGATE_MEMORY_MIB),
            )
        ]
    if v[memory_key] in sizes:
        return []
    first, last = sizes[0], sizes[-1]
    step = sizes[1] - first if len(sizes) > 1 else 0
    return [
        Problem(
            memory_key,
            v[memory_key],
            f"must be a Fargate memory size for {vcpu:g} vCPU: {first}..{last} in steps "
            f"of {step} (ECS: 'No Fargate configuration exists for given values' otherwise)",
            related={cpu_key: v[cpu_key]},
        )
    ]


def _build(v: Mapping[str, Any], *, stack: str, project: str, region: str) -> StackConfig:
    environment: Environment = v["environment"]
    prod = environment is Environment.PROD
    protect = v["protectStatefulResources"]
    deletion_protection = v["dbDeletionProtection"]
    performance_insights = v["dbPerformanceInsights"]
    return StackConfig(
        project=project,
        stack=stack,
        region=region,
        environment=environment,
        phase=v["phase"],
        cleanup_confirmed=v["confirmCleanup"],
        protect_stateful=prod if protect is None else protect,
        log_retention_days=v["logRetentionDays"],
        network=NetworkConfig(
            vpc_cidr=v["vpcCidr"],
            az_count=v["azCount"],
            nat_strategy=v["natStrategy"],
            interface_endpoints=tuple(v["interfaceEndpoints"]),
            flow_log_retention_days=v["flowLogRetentionDays"],
        ),
        queue=QueueConfig(
            visibility_timeout_seconds=v["queueVisibilityTimeoutSeconds"],
            retention_seconds=v["queueRetentionSeconds"],
            dlq_retention_seconds=v["dlqRetentionSeconds"],
            max_receive_count=v["maxReceiveCount"],
            kms_key_arn=v["queueKmsKeyArn"],
        ),
        database=DatabaseConfig(
            instance_class=v["dbInstanceClass"],
            engine_version=v["dbEngineVersion"],
            auto_minor_version_upgrade=v["dbAutoMinorVersionUpgrade"],
            allocated_storage_gb=v["dbAllocatedStorageGb"],
            max_allocated_storage_gb=v["dbMaxAllocatedStorageGb"],
            name=v["dbName"],
            master_username=v["dbMasterUsername"],
            app_username=v["dbAppUsername"],
            multi_az=v["dbMultiAz"],
            deletion_protection=prod if deletion_protection is None else deletion_protection,
            backup_retention_days=v["dbBackupRetentionDays"],
            performance_insights=prod if performance_insights is None else performance_insights,
            performance_insights_retention_days=v["dbPerformanceInsightsRetentionDays"],
            existing_instance_id=v["existingDbInstanceId"],
            proxy_max_connections_percent=v["proxyMaxConnectionsPercent"],
            proxy_max_idle_connections_percent=v["proxyMaxIdleConnectionsPercent"],
            proxy_connection_borrow_timeout_seconds=v["proxyConnectionBorrowTimeoutSeconds"],
            proxy_idle_client_timeout_seconds=v["proxyIdleClientTimeoutSeconds"],
        ),
        batch=BatchConfig(
            image=v["image"],
            compute_type=v["computeType"],
            max_vcpus=v["batchMaxVcpus"],
            spot_instance_types=tuple(v["spotInstanceTypes"]),
            job_vcpu=v["jobVcpu"],
            job_memory_mib=v["jobMemoryMib"],
            job_timeout_seconds=v["jobTimeoutSeconds"],
            job_attempts=v["jobAttempts"],
            expected_jobs_per_day=v["expectedJobsPerDay"],
            expected_job_seconds=v["expectedJobSeconds"],
        ),
        kafka=KafkaConfig(
            topic_manager=v["kafka"],
            mode=v["kafkaMode"],
            version=v["kafkaVersion"],
            instance_type=v["kafkaInstanceType"],
            broker_count=v["kafkaBrokerCount"],
            volume_size_gb=v["kafkaVolumeSizeGb"],
            max_volume_size_gb=v["kafkaMaxVolumeSizeGb"],
            storage_target_percent=v["kafkaStorageTargetPercent"],
            enhanced_monitoring=v["kafkaEnhancedMonitoring"],
            topic_name=v["topicName"],
            topic_partitions=v["topicPartitions"],
            replication_factor=v["topicReplicationFactor"],
            min_insync_replicas=v["topicMinInsyncReplicas"],
            topic_retention_hours=v["topicRetentionHours"],
            dead_letter_retention_hours=v["deadLetterRetentionHours"],
            consumer_group=v["consumerGroup"],
            producer_security_group_ids=tuple(v["producerSecurityGroupIds"]),
        ),
        consumer=ConsumerServiceConfig(
            desired_count=v["consumerDesiredCount"],
            min_count=v["consumerMinCount"],
            max_count=v["consumerMaxCount"],
            cpu=v["consumerCpu"],
            memory_mib=v["consumerMemoryMib"],
            lag_target_per_task=v["consumerLagTargetPerTask"],
            cpu_target_percent=v["consumerCpuTargetPercent"],
        ),
        monitoring=MonitoringConfig(
            alert_email=v["alertEmail"],
            queue_depth_threshold=v["queueDepthThreshold"],
            queue_age_threshold_seconds=v["queueAgeThresholdSeconds"],
            consumer_lag_threshold=v["consumerLagThreshold"],
            msk_cpu_threshold_percent=v["mskCpuThresholdPercent"],
            msk_disk_threshold_percent=v["mskDiskThresholdPercent"],
            rds_cpu_threshold_percent=v["rdsCpuThresholdPercent"],
            rds_free_storage_threshold_gb=v["rdsFreeStorageThresholdGb"],
            trigger_jobs_per_day=v["triggerJobsPerDay"],
            trigger_sustained_days=v["triggerSustainedDays"],
            trigger_latency_seconds=v["triggerLatencySeconds"],
            trigger_latency_breach_percent=v["triggerLatencyBreachPercent"],
        ),
        adoption=AdoptionConfig(**{field: v[key] for key, field in ADOPTION_KEYS.items()}),
    )


# --------------------------------------------------------------------------------------------
# The stack files.


class PlanError(RuntimeError):
    """A stack cannot be planned: its ``Pulumi.<stack>.yaml`` cannot be read (no such stack, a
    secret value), or the program reported errors (raised by ``infra.plan``)."""


def project_dir(start: Path | None = None) -> Path:
    """The directory holding Pulumi.yaml: searched upwards from ``start`` (or the cwd), then
    the repository this package was installed from."""
    candidates: list[Path] = []
    here = (start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    candidates.append(Path(__file__).resolve().parent.parent)
    for candidate in candidates:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise PlanError("cannot find Pulumi.yaml in the current directory or its parents")


def available_stacks(directory: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


def read_stack_config(stack: str, directory: Path | None = None) -> dict[str, str]:
    """Flatten ``Pulumi.<stack>.yaml`` into the strings the engine hands a program."""
    directory = directory or project_dir()
    path = directory / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = ", ".join(available_stacks(directory)) or "none"
        raise PlanError(f"no stack {stack!r}: {path.name} does not exist (stacks: {stacks})")
    stat = path.stat()
    return dict(_parsed_stack_file(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _parsed_stack_file(path: str, _mtime_ns: int, _size: int) -> Mapping[str, str]:
    """A stack file's config, parsed once per version of the file (the offline plan reads it
    for every plan it evaluates; ``plan --all`` evaluates each stack's five times)."""
    name = Path(path).name
    document = _load_yaml(Path(path)) or {}
    if not isinstance(document, Mapping):
        raise PlanError(f"{name}: must be a mapping with a 'config' key")
    config = document.get("config") or {}
    if not isinstance(config, Mapping):
        raise PlanError(f"{name}: 'config' must be a mapping of NAMESPACE:KEY to values")
    raw: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and "secure" in value:
            raise PlanError(f"{name}: {key} is a secret; the offline plan cannot decrypt it")
        raw[str(key)] = _config_string(value)
    return MappingProxyType(raw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last
    one silently, so the first value of a duplicated config key would be ignored)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)  # pyright: ignore[reportUnknownMemberType]
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found key {key!r} a second time (first on line {first}); each key may be "
                    "given once",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> Any:
    """The stack file's document; a syntax error or a duplicated key is a ``PlanError`` that
    names the file and the line (no traceback)."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        what = " ".join(p for p in (error.context, error.problem) if p)
        raise PlanError(f"{path.name}: {where}: {what}") from None
    except yaml.YAMLError as error:
        raise PlanError(f"{path.name}: not valid YAML: {error}") from None


def _config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def load() -> StackConfig:
    """Read the running Pulumi program's stack config (the program's single config read)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # Every key of the stack with its namespace: the engine's environment, then explicit settings.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    stack = pulumi.get_stack()
    return parse(raw, stack=stack, project=pulumi.get_project(), source=f"Pulumi.{stack}.yaml")


def markdown_table() -> str:
    """The README's configuration-key table, rendered from ``KEYS``."""
    lines: list[str] = []
    section = ""
    for key in KEYS:
        if key.section != section:
            section = key.section
            if lines:
                lines.append("")
            lines += [
                f"**{section}**",
                "",
                "| key | allowed | default | what it sets |",
                "|---|---|---|---|",
            ]
        default = "(required)" if key.required else _show_default(key.default)
        lines.append(f"| `{NAMESPACE}:{key.name}` | {key.allowed} | {default} | {key.help} |")
    return "\n".join(lines) + "\n"


def _show_default(value: Any) -> str:
    if value is None:
        return "see text"
    if isinstance(value, StrEnum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`" + json.dumps(list(value)) + "`"
    return f"`{value}`"
