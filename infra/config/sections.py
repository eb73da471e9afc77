"""The sections of the stack config that the network, the SQS job queue and the database take:
each key declared on the field that holds it, the limits of the service it configures beside
it, and the section's rules (run once every key parsed on its own; each problem is reported on
the key to change, with the other keys of the rule named beside it)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from infra.config.keys import (
    MISSING,
    NAMESPACE,
    TRUE_IN_PROD,
    Environment,
    InvalidValueError,
    Key,
    Problem,
    Values,
    boolean,
    choice,
    integer,
    json_list,
    key,
    log_retention,
    optional,
    pattern,
    problem,
    rule_key,
    section,
)
from jobstream.contract.choices import NatStrategy

_ARN = re.compile(r"^arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]*):(\d{12}):(.+)$")

# --------------------------------------------------------------------------------------------
# Network

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


def _cidr(raw: str) -> str:
    lo, hi = VPC_PREFIX_RANGE
    allowed = f"must be a private IPv4 network in CIDR form, /{lo} to /{hi} (e.g. 10.0.0.0/16)"
    try:
        network = ipaddress.IPv4Network(str(raw).strip(), strict=True)
    except ValueError:
        raise InvalidValueError(allowed) from None
    if not network.is_private or not lo <= network.prefixlen <= hi:
        raise InvalidValueError(allowed)
    return str(network)


_cidr.__doc__ = f"IPv4 CIDR /{VPC_PREFIX_RANGE[0]}../{VPC_PREFIX_RANGE[1]}"


def _endpoint_list(raw: str) -> tuple[str, ...]:
    allowed = "must be a JSON list of interface endpoint services from: " + ", ".join(
        KNOWN_INTERFACE_ENDPOINTS
    )
    value = json_list(raw, allowed)
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v in KNOWN_INTERFACE_ENDPOINTS for v in value
    ):
        raise InvalidValueError(allowed)
    if len(set(value)) != len(value):
        raise InvalidValueError("must not name a service twice")
    return tuple(value)


_endpoint_list.__doc__ = "list of service names"


@section("Network")
@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    vpc_cidr: str = key(
        "vpcCidr", _cidr, "10.0.0.0/16", "VPC CIDR; subnets are computed from it (8 equal blocks)."
    )
    az_count: int = key("azCount", integer(2, 3), 2, "Availability zones used.")
    nat_strategy: NatStrategy = key(
        "natStrategy",
        choice(NatStrategy),
        NatStrategy.SINGLE,
        "NAT gateways: none, one for the VPC, or one per AZ.",
    )
    ALLOW_REDUCED_NAT: ClassVar[Key] = rule_key(
        "allowReducedNat", boolean, False, "Allow prod to run with fewer NAT gateways than AZs."
    )
    interface_endpoints: tuple[str, ...] = key(
        "interfaceEndpoints",
        _endpoint_list,
        DEFAULT_INTERFACE_ENDPOINTS,
        "Interface VPC endpoints (JSON list of service names).",
    )
    flow_log_retention_days: int = key(
        "flowLogRetentionDays", log_retention, 30, "Retention of VPC flow logs."
    )

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        prod = v["environment"] is Environment.PROD
        if prod and v["natStrategy"] is not NatStrategy.PER_AZ and not v["allowReducedNat"]:
            yield problem(
                v,
                "natStrategy",
                f"prod needs one NAT gateway per AZ (per-az); set {NAMESPACE}:allowReducedNat "
                "to true to accept less",
            )


# --------------------------------------------------------------------------------------------
# SQS job queue

SQS_RETENTION_RANGE = (60, 1_209_600)
SQS_VISIBILITY_RANGE = (0, 43_200)


@section("SQS job queue")
@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    visibility_timeout_seconds: int = key(
        "queueVisibilityTimeoutSeconds",
        integer(*SQS_VISIBILITY_RANGE),
        3600,
        "Visibility timeout; must be >= jobTimeoutSeconds.",
    )
    retention_seconds: int = key(
        "queueRetentionSeconds",
        integer(*SQS_RETENTION_RANGE),
        345_600,
        "Message retention of the job queue.",
    )
    dlq_retention_seconds: int = key(
        "dlqRetentionSeconds",
        integer(*SQS_RETENTION_RANGE),
        1_209_600,
        "Message retention of the DLQ; must be >= queueRetentionSeconds.",
    )
    max_receive_count: int = key(
        "maxReceiveCount", integer(1, 1000), 5, "Receives before a message moves to the DLQ."
    )
    kms_key_arn: str | None = key(
        "queueKmsKeyArn",
        optional(pattern(_ARN, "must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")),
        None,
        "KMS key for the queues (in aws:region); SQS-managed encryption when unset.",
    )

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        if v["queueVisibilityTimeoutSeconds"] < v["jobTimeoutSeconds"]:
            yield problem(
                v,
                "queueVisibilityTimeoutSeconds",
                f"must be >= jobTimeoutSeconds ({v['jobTimeoutSeconds']}), or a running job's "
                "message becomes visible again and runs twice",
                "jobTimeoutSeconds",
            )
        if v["dlqRetentionSeconds"] < v["queueRetentionSeconds"]:
            yield problem(
                v,
                "dlqRetentionSeconds",
                f"must be >= queueRetentionSeconds ({v['queueRetentionSeconds']}); a moved "
                "message keeps its original enqueue time",
                "queueRetentionSeconds",
            )


def kms_key_problems(v: Values, region: str, partition: str) -> Iterator[Problem]:
    """queueKmsKeyArn: the ARN of a KMS key in the stack's region (SQS uses keys of its own
    region only)."""
    arn = v["queueKmsKeyArn"]
    if arn is None or arn is MISSING:
        return
    match = _ARN.match(arn)
    assert match is not None  # the key's parser checked the pattern
    arn_partition, service, arn_region, _account, resource = match.groups()
    expected = f"arn:{partition}:kms:{region}:<account>:key/<key id>"
    if service != "kms" or not resource.startswith("key/"):
        yield Problem(
            "queueKmsKeyArn",
            arn,
            f"is an ARN of {service} {resource.split('/')[0]!r}, not of a KMS key: must be "
            f"{expected}",
        )
    elif arn_region != region or arn_partition != partition:
        yield Problem(
            "queueKmsKeyArn",
            arn,
            f"is a key in {arn_region} ({arn_partition}); SQS uses keys of its own region only: "
            f"must be {expected}",
            related={"(aws:region)": region},
        )


# --------------------------------------------------------------------------------------------
# Database and RDS Proxy

RDS_MASTER_USERNAME_MAX = 16
"""CreateDBInstance MasterUsername: 'Must be 1 to 16 letters, numbers, or underscores.'"""
PERFORMANCE_INSIGHTS_FREE_DAYS = 7
"""Performance Insights retention: 7 (the default, free tier), 731, or a multiple of 31."""

_DB_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RDS_INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_db_user = pattern(_DB_IDENTIFIER, "must be a lowercase identifier (letters, digits, _)")


def _master_user(raw: str) -> str:
    value = _db_user(raw)
    if len(value) > RDS_MASTER_USERNAME_MAX:
        raise InvalidValueError(
            f"is longer than the {RDS_MASTER_USERNAME_MAX} characters RDS allows for the "
            "master user (CreateDBInstance MasterUsername)"
        )
    return value


_master_user.__doc__ = _db_user.__doc__


def _retention_days(raw: str) -> int:
    allowed = f"must be {PERFORMANCE_INSIGHTS_FREE_DAYS} (free tier), 731, or a multiple of 31"
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise InvalidValueError(allowed) from None
    if value not in (PERFORMANCE_INSIGHTS_FREE_DAYS, 731) and (value <= 0 or value % 31):
        raise InvalidValueError(allowed)
    return value


_retention_days.__doc__ = "7, 731 or a multiple of 31"

# The guardrails of DESIGN.md (stateful resources protected in prod, deletion protection): no
# escape key, because `pulumi destroy` does not run the program (a decommission turns
# protection off out of band, see docs/operations.md), and every `pulumi up` must keep them.
PROD_GUARDRAIL = (
    "must not be false in prod: the guardrails keep the database, proxy, queues and MSK cluster "
    "from being deleted (leave it unset or true; to decommission, see docs/operations.md)"
)


def prod_guardrail(v: Values, key_name: str) -> Iterator[Problem]:
    if v["environment"] is Environment.PROD and v[key_name] is False:
        yield problem(v, key_name, PROD_GUARDRAIL, "environment")


@section("Database and RDS Proxy")
@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    instance_class: str = key(
        "dbInstanceClass",
        pattern(
            re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$"),
            "must be an RDS instance class like db.t4g.micro",
        ),
        "db.t4g.micro",
        "RDS instance class.",
    )
    engine_version: str = key(
        "dbEngineVersion",
        pattern(
            re.compile(r"^\d+(\.\d+)?$"),
            "must be a PostgreSQL major version like 16 (or a minor like 16.4)",
        ),
        "16",
        "PostgreSQL engine version: the major only while dbAutoMinorVersionUpgrade is on (RDS picks and upgrades the minor).",
    )
    auto_minor_version_upgrade: bool = key(
        "dbAutoMinorVersionUpgrade",
        boolean,
        True,
        "Let RDS apply minor engine upgrades in the maintenance window.",
    )
    allocated_storage_gb: int = key(
        "dbAllocatedStorageGb", integer(20, 65_536), 20, "Initial storage (GiB)."
    )
    max_allocated_storage_gb: int = key(
        "dbMaxAllocatedStorageGb",
        integer(20, 65_536),
        100,
        "Storage autoscaling ceiling (GiB); >= dbAllocatedStorageGb.",
    )
    name: str = key(
        "dbName",
        pattern(_DB_IDENTIFIER, "must be a lowercase identifier (letters, digits, _)"),
        "jobstream",
        "Database name.",
    )
    master_username: str = key(
        "dbMasterUsername",
        _master_user,
        "jobstream_admin",
        "Master user (password managed by RDS in Secrets Manager).",
    )
    app_username: str = key(
        "dbAppUsername",
        _db_user,
        "jobstream_app",
        "Database user the jobs connect as (IAM auth through the proxy).",
    )
    multi_az: bool = key("dbMultiAz", boolean, False, "Multi-AZ deployment.")
    deletion_protection: bool = key(
        "dbDeletionProtection",
        boolean,
        TRUE_IN_PROD,
        "Deletion protection and a final snapshot; defaults to true in prod.",
    )
    backup_retention_days: int = key(
        "dbBackupRetentionDays", integer(1, 35), 7, "Automated backup retention."
    )
    performance_insights: bool = key(
        "dbPerformanceInsights",
        boolean,
        TRUE_IN_PROD,
        "Performance Insights on the instance; defaults to true in prod.",
    )
    performance_insights_retention_days: int = key(
        "dbPerformanceInsightsRetentionDays",
        _retention_days,
        PERFORMANCE_INSIGHTS_FREE_DAYS,
        "Performance Insights retention (7 days is the free tier).",
    )
    existing_instance_id: str | None = key(
        "existingDbInstanceId",
        optional(pattern(_RDS_INSTANCE_ID, "must be an RDS instance identifier")),
        None,
        "Front an existing RDS instance instead of creating one.",
    )
    proxy_max_connections_percent: int = key(
        "proxyMaxConnectionsPercent",
        integer(1, 100),
        90,
        "RDS Proxy pool: max connections (% of max_connections).",
    )
    proxy_max_idle_connections_percent: int = key(
        "proxyMaxIdleConnectionsPercent",
        integer(0, 100),
        50,
        "RDS Proxy pool: max idle connections (%); <= proxyMaxConnectionsPercent.",
    )
    proxy_connection_borrow_timeout_seconds: int = key(
        "proxyConnectionBorrowTimeoutSeconds",
        integer(0, 3600),
        120,
        "RDS Proxy: wait for a free connection (s).",
    )
    proxy_idle_client_timeout_seconds: int = key(
        "proxyIdleClientTimeoutSeconds",
        integer(1, 28_800),
        1800,
        "RDS Proxy: close idle client connections after (s).",
    )

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        yield from prod_guardrail(v, "dbDeletionProtection")
        if v["dbMaxAllocatedStorageGb"] < v["dbAllocatedStorageGb"]:
            yield problem(
                v,
                "dbMaxAllocatedStorageGb",
                f"must be >= dbAllocatedStorageGb ({v['dbAllocatedStorageGb']})",
                "dbAllocatedStorageGb",
            )
        if v["dbAutoMinorVersionUpgrade"] and "." in v["dbEngineVersion"]:
            yield problem(
                v,
                "dbEngineVersion",
                "pins a minor version while RDS applies minor upgrades (dbAutoMinorVersionUpgrade "
                "is true): after RDS upgrades the instance every `pulumi up` would plan a "
                "downgrade that RDS refuses. Give the major only "
                f"({v['dbEngineVersion'].split('.')[0]}; the provider keeps it without a diff "
                "and reports the running version in engine_version_actual), or set "
                "dbAutoMinorVersionUpgrade to false",
                "dbAutoMinorVersionUpgrade",
            )
        if v["dbAppUsername"] == v["dbMasterUsername"]:
            # The proxy holds one secret per user, and `jobstream db-bootstrap` (which writes
            # the app user's) would reset the master's password that RDS manages.
            yield problem(
                v,
                "dbAppUsername",
                "is the master user: the app user must be a separate database user (set "
                "jobstream:dbAppUsername to another name)",
                "dbMasterUsername",
            )
        if v["proxyMaxIdleConnectionsPercent"] > v["proxyMaxConnectionsPercent"]:
            yield problem(
                v,
                "proxyMaxIdleConnectionsPercent",
                f"must be <= proxyMaxConnectionsPercent ({v['proxyMaxConnectionsPercent']})",
                "proxyMaxConnectionsPercent",
            )
