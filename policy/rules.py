"""The guardrails of the jobstream policy pack, importable without starting a policy server.

Each rule is a plain validate function over a resource's inputs as the engine sends them
(camelCase wire names, e.g. ``sqsManagedSseEnabled``, ``encryptionInfo.encryptionInTransit``),
wrapped in a ``ResourceValidationPolicy`` / ``StackValidationPolicy``; ``policy/__main__.py``
hands ``POLICIES`` to ``PolicyPack``. This module imports only the standard library, ``pulumi``
and ``pulumi_policy``: the pack runs in a virtualenv that holds nothing else.

Which environment a stack is ("is this prod?") is decided by ``environment_of``: the policy's
own config ``environment`` (``--policy-pack-config``), else the stack's ``jobstream:environment``
config value, else the stack name (the same default ``infra/config/`` applies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "jobstream-guardrails"
PROD = "prod"
ENVIRONMENT_CONFIG_KEY = "jobstream:environment"

# Resource type tokens.
MSK_CLUSTER = "aws:msk/cluster:Cluster"
MSK_SERVERLESS = "aws:msk/serverlessCluster:ServerlessCluster"
SQS_QUEUE = "aws:sqs/queue:Queue"
SQS_REDRIVE = "aws:sqs/redrivePolicy:RedrivePolicy"
SQS_REDRIVE_ALLOW = "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_PROXY = "aws:rds/proxy:Proxy"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_USER_POLICY = "aws:iam/userPolicy:UserPolicy"
IAM_GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"

STATEFUL_TYPES: tuple[str, ...] = (
    RDS_INSTANCE,
    RDS_CLUSTER,
    RDS_PROXY,
    SQS_QUEUE,
    MSK_CLUSTER,
    MSK_SERVERLESS,
)
"""What DESIGN.md calls stateful: the database, the proxy, the queues and the MSK cluster."""

OPEN_IPV4 = "0.0.0.0/0"
OPEN_IPV6 = "::/0"
OPEN_CIDRS = (OPEN_IPV4, OPEN_IPV6)

_ENVIRONMENT_SCHEMA = PolicyConfigSchema(
    properties={
        "environment": {
            "type": "string",
            "description": "Environment of the stack (dev, staging, prod); defaults to the "
            "stack's jobstream:environment config, then the stack name.",
        }
    }
)


# ---- helpers ---------------------------------------------------------------------------------


def environment_of(
    policy_config: Mapping[str, Any],
    stack_config: Mapping[str, str] | None = None,
    stack_name: str | None = None,
) -> str:
    """The stack's environment: policy config, then ``jobstream:environment``, then stack name.

    ``stack_config`` and ``stack_name`` default to what the engine hands the pack
    (``PULUMI_CONFIG`` and ``PULUMI_STACK``, read through the pulumi runtime)."""
    explicit = policy_config.get("environment")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip()
    if stack_config is None:
        stack_config = pulumi.runtime.get_config_env()
    configured = stack_config.get(ENVIRONMENT_CONFIG_KEY)
    if isinstance(configured, str) and configured.strip():
        return configured.strip()
    return stack_name if stack_name is not None else pulumi.get_stack()


def is_prod(policy_config: Mapping[str, Any]) -> bool:
    return environment_of(policy_config) == PROD


def _get(props: Mapping[str, Any], *path: str) -> Any:
    """``props[a][b]...`` or None where a level is missing (unknowns still raise)."""
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _known(read: Callable[[], Any]) -> Any:
    """The value, or None when it cannot be known during preview."""
    try:
        return read()
    except UnknownValueError:
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# ---- MSK ---------------------------------------------------------------------------------------


def msk_encryption_in_transit(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MSK_CLUSTER:
        return
    in_transit = _get(args.props, "encryptionInfo", "encryptionInTransit") or {}
    client_broker = _get(in_transit, "clientBroker")
    if client_broker not in (None, "TLS"):
        report(
            f"MSK cluster {args.name}: encryptionInfo.encryptionInTransit.clientBroker is "
            f"{client_broker!r}; client-broker traffic must be TLS only (clientBroker: TLS).",
            None,
        )
    if _get(in_transit, "inCluster") is False:
        report(
            f"MSK cluster {args.name}: encryptionInfo.encryptionInTransit.inCluster is false; "
            "traffic between brokers must be encrypted (inCluster: true).",
            None,
        )


def msk_iam_client_auth(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == MSK_CLUSTER:
        auth = args.props.get("clientAuthentication") or {}
        if not _is_true(_get(auth, "sasl", "iam")):
            report(
                f"MSK cluster {args.name}: IAM client authentication is off; set "
                "clientAuthentication.sasl.iam to true.",
                None,
            )
        if _is_true(_get(auth, "unauthenticated")):
            report(
                f"MSK cluster {args.name}: clientAuthentication.unauthenticated is true; "
                "unauthenticated clients must not be able to connect.",
                None,
            )
    elif args.resource_type == MSK_SERVERLESS and not _is_true(
        _get(args.props, "clientAuthentication", "sasl", "iam", "enabled")
    ):
        report(
            f"MSK serverless cluster {args.name}: IAM client authentication is off; set "
            "clientAuthentication.sasl.iam.enabled to true.",
            None,
        )


def msk_encryption_at_rest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    # MSK always encrypts its volumes; the rule asks for the customer-managed KMS key that
    # DESIGN.md's "encryption at rest (KMS)" means. Serverless clusters cannot take a key (AWS
    # owns it), so they pass.
    if args.resource_type != MSK_CLUSTER:
        return
    key = _get(args.props, "encryptionInfo", "encryptionAtRestKmsKeyArn")
    if not (isinstance(key, str) and key.strip()):
        report(
            f"MSK cluster {args.name}: no customer-managed KMS key for encryption at rest; set "
            "encryptionInfo.encryptionAtRestKmsKeyArn.",
            None,
        )


# ---- SQS ---------------------------------------------------------------------------------------


def sqs_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != SQS_QUEUE:
        return
    kms = args.props.get("kmsMasterKeyId")
    if not (_is_true(args.props.get("sqsManagedSseEnabled")) or (isinstance(kms, str) and kms)):
        report(
            f"SQS queue {args.name}: not encrypted at rest; set sqsManagedSseEnabled: true or "
            "kmsMasterKeyId.",
            None,
        )


def _queue_name_of_url(url: Any) -> str | None:
    return url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) and url else None


def _queue_name_of_arn(arn: Any) -> str | None:
    return arn.rsplit(":", 1)[-1] if isinstance(arn, str) and arn else None


def _redrive_target(policy: Any) -> str | None:
    """The DLQ name named by a redrive policy (a JSON string or an object)."""
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except json.JSONDecodeError:
            return None
    if not isinstance(policy, Mapping):
        return None
    return _queue_name_of_arn(policy.get("deadLetterTargetArn"))


def _queue_name(queue: PolicyResource) -> str | None:
    props = queue.props
    for read in (
        lambda: props.get("name"),
        lambda: _queue_name_of_url(props.get("url")),
        lambda: _queue_name_of_arn(props.get("arn")),
    ):
        name = _known(read)
        if isinstance(name, str) and name:
            return name
    return None


def _queues_behind(
    resource: PolicyResource,
    prop: str,
    by_name: Mapping[str, PolicyResource],
    name_of: Callable[[Any], str | None],
) -> list[PolicyResource]:
    """The queues that ``resource``'s property ``prop`` refers to: through the engine's property
    dependencies when it sent them, else by the queue name inside the (known) value."""
    linked = [
        r for r in resource.property_dependencies.get(prop, []) if r.resource_type == SQS_QUEUE
    ]
    if linked:
        return linked
    name = name_of(_known(lambda: resource.props.get(prop)))
    return [by_name[name]] if name is not None and name in by_name else []


def sqs_job_queues_have_dlq(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every queue that is not itself a dead-letter queue has a redrive policy to one."""
    queues = [r for r in args.resources if r.resource_type == SQS_QUEUE]
    by_name = {name: q for q in queues if (name := _queue_name(q))}
    redriven: set[str] = set()
    dead_letter: set[str] = set()
    for q in queues:
        inline = _known(lambda q=q: q.props.get("redrivePolicy"))
        if inline:
            redriven.add(q.urn)
            target = _redrive_target(inline)
            if target in by_name:
                dead_letter.add(by_name[target].urn)
        if _known(lambda q=q: q.props.get("redriveAllowPolicy")):
            dead_letter.add(q.urn)
    for r in args.resources:
        if r.resource_type == SQS_REDRIVE:
            redriven.update(
                q.urn for q in _queues_behind(r, "queueUrl", by_name, _queue_name_of_url)
            )
            dead_letter.update(
                q.urn for q in _queues_behind(r, "redrivePolicy", by_name, _redrive_target)
            )
        elif r.resource_type == SQS_REDRIVE_ALLOW:
            dead_letter.update(
                q.urn for q in _queues_behind(r, "queueUrl", by_name, _queue_name_of_url)
            )
    for q in queues:
        if q.urn not in redriven and q.urn not in dead_letter:
            report(
                f"SQS queue {q.name} has no dead-letter queue: add an "
                "aws.sqs.RedrivePolicy (or redrivePolicy) naming a DLQ; a queue counts as a DLQ "
                "only when a redrive policy targets it or it has a redrive-allow policy.",
                q.urn,
            )


# ---- RDS ---------------------------------------------------------------------------------------


def rds_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in (RDS_INSTANCE, RDS_CLUSTER) and _is_true(
        args.props.get("publiclyAccessible")
    ):
        report(
            f"RDS {args.name}: publiclyAccessible is true; the database must stay private.", None
        )


def rds_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (RDS_INSTANCE, RDS_CLUSTER):
        return
    if args.resource_type == RDS_INSTANCE and args.props.get("replicateSourceDb"):
        return  # a read replica inherits the source's encryption
    if not _is_true(args.props.get("storageEncrypted")):
        report(f"RDS {args.name}: storage is not encrypted; set storageEncrypted: true.", None)


def rds_deletion_protection_in_prod(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (RDS_INSTANCE, RDS_CLUSTER) or not is_prod(args.get_config()):
        return
    if not _is_true(args.props.get("deletionProtection")):
        report(f"RDS {args.name}: deletionProtection must be true in prod.", None)


def rds_proxy_requires_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == RDS_PROXY and not _is_true(args.props.get("requireTls")):
        report(f"RDS Proxy {args.name}: requireTls must be true.", None)


# ---- security groups ---------------------------------------------------------------------------


def _open_cidrs(*values: Any) -> list[str]:
    return [c for v in values for c in _as_list(v) if c in OPEN_CIDRS]


def no_open_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, kind = args.props, args.resource_type
    found: list[str] = []
    if kind in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        for rule in _as_list(props.get("ingress")):
            if isinstance(rule, Mapping):
                found += _open_cidrs(rule.get("cidrBlocks"), rule.get("ipv6CidrBlocks"))
    elif kind == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        found += _open_cidrs(props.get("cidrBlocks"), props.get("ipv6CidrBlocks"))
    elif kind == SG_INGRESS_RULE:
        found += _open_cidrs(props.get("cidrIpv4"), props.get("cidrIpv6"))
    for cidr in dict.fromkeys(found):
        report(
            f"security group ingress {args.name} admits {cidr} (the whole internet); admit the "
            "security groups (or VPC ranges) that need access instead.",
            None,
        )


# ---- IAM ---------------------------------------------------------------------------------------


def wildcard_actions(document: Mapping[str, Any]) -> list[str]:
    """The ``*`` / ``service:*`` actions (and NotAction) that Allow statements grant."""
    found: list[str] = []
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            found.append(f"NotAction {statement['NotAction']}")
        for action in _as_list(statement.get("Action")):
            if isinstance(action, str) and (action == "*" or action.endswith(":*")):
                found.append(action)
    return found


def _documents(kind: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    if kind in (IAM_ROLE_POLICY, IAM_POLICY, IAM_USER_POLICY, IAM_GROUP_POLICY):
        yield "policy", props.get("policy")
    elif kind == IAM_ROLE:
        for i, inline in enumerate(_as_list(props.get("inlinePolicies"))):
            if isinstance(inline, Mapping):
                yield f"inlinePolicies[{i}] ({inline.get('name')})", inline.get("policy")


def iam_no_wildcard_actions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, text in _documents(args.resource_type, args.props):
        if isinstance(text, str):
            try:
                document = json.loads(text)
            except json.JSONDecodeError:
                report(f"IAM {args.name} {where}: the policy is not valid JSON.", None)
                continue
        else:
            document = text
        if not isinstance(document, Mapping):
            continue
        for action in wildcard_actions(document):
            report(
                f"IAM {args.name} {where}: an Allow statement grants the wildcard action "
                f"{action!r}; name the actions.",
                None,
            )


# ---- logs and protection ------------------------------------------------------------------------


def log_group_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LOG_GROUP:
        return
    days = args.props.get("retentionInDays")
    if not (isinstance(days, int | float) and days > 0):
        report(
            f"log group {args.name}: no retention (logs kept forever); set retentionInDays.", None
        )


def stateful_protected_in_prod(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in STATEFUL_TYPES or not is_prod(args.get_config()):
        return
    if not args.opts.protect:
        report(
            f"{args.resource_type} {args.name} is stateful and not protected in prod; create it "
            "with ResourceOptions(protect=True) (jobstream:protectStatefulResources).",
            None,
        )


# ---- the pack ----------------------------------------------------------------------------------


def _resource_policy(
    name: str,
    description: str,
    validate: Callable[[ResourceValidationArgs, ReportViolation], None],
    *,
    config_schema: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=config_schema,
    )


POLICIES: list[Policy] = [
    _resource_policy(
        "msk-tls-in-transit",
        "MSK clusters encrypt client-broker (TLS only) and in-cluster traffic.",
        msk_encryption_in_transit,
    ),
    _resource_policy(
        "msk-iam-client-auth",
        "MSK clusters authenticate clients with IAM and refuse unauthenticated ones.",
        msk_iam_client_auth,
    ),
    _resource_policy(
        "msk-encryption-at-rest-kms",
        "MSK provisioned clusters encrypt data at rest with a customer-managed KMS key.",
        msk_encryption_at_rest,
    ),
    _resource_policy(
        "sqs-encrypted", "SQS queues are encrypted at rest (SSE-SQS or KMS).", sqs_encrypted
    ),
    StackValidationPolicy(
        name="sqs-job-queue-has-dlq",
        description="Every SQS queue that is not a dead-letter queue redrives to one.",
        validate=sqs_job_queues_have_dlq,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    _resource_policy(
        "rds-not-public", "RDS databases are not publicly accessible.", rds_not_public
    ),
    _resource_policy("rds-encrypted", "RDS storage is encrypted.", rds_encrypted),
    _resource_policy(
        "rds-deletion-protection-in-prod",
        "RDS databases have deletion protection in prod.",
        rds_deletion_protection_in_prod,
        config_schema=_ENVIRONMENT_SCHEMA,
    ),
    _resource_policy(
        "rds-proxy-requires-tls", "RDS Proxy requires TLS from clients.", rds_proxy_requires_tls
    ),
    _resource_policy(
        "no-open-ingress",
        "No security-group ingress from 0.0.0.0/0 or ::/0.",
        no_open_ingress,
    ),
    _resource_policy(
        "iam-no-wildcard-actions",
        "IAM policies name their actions: no '*' or 'service:*' action (or NotAction) in Allow.",
        iam_no_wildcard_actions,
    ),
    _resource_policy(
        "log-group-retention", "CloudWatch log groups have a retention period.", log_group_retention
    ),
    _resource_policy(
        "stateful-protected-in-prod",
        "Stateful resources (database, proxy, queues, MSK cluster) are protected in prod.",
        stateful_protected_in_prod,
        config_schema=_ENVIRONMENT_SCHEMA,
    ),
]
