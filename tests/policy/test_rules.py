"""Each guardrail rejects a resource built to violate it and accepts its compliant twin."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy import rules
from policy.rules import (
    IAM_POLICY,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    LOG_GROUP,
    MSK_CLUSTER,
    MSK_SERVERLESS,
    POLICIES,
    RDS_INSTANCE,
    RDS_PROXY,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    SG_INGRESS_RULE,
    SQS_QUEUE,
    SQS_REDRIVE,
    SQS_REDRIVE_ALLOW,
)
from tests.policy.support import (
    check_resource,
    check_stack,
    policy_resource,
    resource_args,
)

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:"


def msk(**changes: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "clusterName": "jobstream-dev-kafka",
        "encryptionInfo": {
            "encryptionAtRestKmsKeyArn": KEY,
            "encryptionInTransit": {"clientBroker": "TLS", "inCluster": True},
        },
        "clientAuthentication": {"sasl": {"iam": True}, "unauthenticated": False},
    }
    props.update(changes)
    return props


def rds(**changes: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "identifier": "jobstream-prod-db",
        "publiclyAccessible": False,
        "storageEncrypted": True,
        "deletionProtection": True,
    }
    props.update(changes)
    return props


def messages(policy: str, type_: str, props: dict[str, Any], **kw: Any) -> list[str]:
    return [v.message for v in check_resource(policy, resource_args(type_, props, **kw))]


def test_every_policy_is_mandatory_and_uniquely_named() -> None:
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names)), names
    assert {p.enforcement_level for p in POLICIES} == {rules.EnforcementLevel.MANDATORY}


# ---- MSK ---------------------------------------------------------------------------------------


def test_msk_compliant_cluster_passes_every_msk_rule() -> None:
    for name in ("msk-tls-in-transit", "msk-iam-client-auth", "msk-encryption-at-rest-kms"):
        assert messages(name, MSK_CLUSTER, msk()) == [], name


@pytest.mark.parametrize("client_broker", ["TLS_PLAINTEXT", "PLAINTEXT"])
def test_msk_plaintext_client_traffic_is_rejected(client_broker: str) -> None:
    props = msk(encryptionInfo={"encryptionAtRestKmsKeyArn": KEY,
                                "encryptionInTransit": {"clientBroker": client_broker}})  # fmt: skip
    (message,) = messages("msk-tls-in-transit", MSK_CLUSTER, props)
    assert client_broker in message and "TLS only" in message


def test_msk_unencrypted_in_cluster_traffic_is_rejected() -> None:
    props = msk(encryptionInfo={"encryptionAtRestKmsKeyArn": KEY,
                                "encryptionInTransit": {"clientBroker": "TLS", "inCluster": False}})  # fmt: skip
    (message,) = messages("msk-tls-in-transit", MSK_CLUSTER, props)
    assert "inCluster" in message


def test_msk_without_iam_auth_is_rejected() -> None:
    props = msk(clientAuthentication={"sasl": {"scram": True}})
    (message,) = messages("msk-iam-client-auth", MSK_CLUSTER, props)
    assert "clientAuthentication.sasl.iam" in message


def test_msk_with_unauthenticated_access_is_rejected() -> None:
    props = msk(clientAuthentication={"sasl": {"iam": True}, "unauthenticated": True})
    (message,) = messages("msk-iam-client-auth", MSK_CLUSTER, props)
    assert "unauthenticated" in message


def test_msk_serverless_without_iam_auth_is_rejected() -> None:
    good = {"clientAuthentication": {"sasl": {"iam": {"enabled": True}}}}
    bad = {"clientAuthentication": {"sasl": {"iam": {"enabled": False}}}}
    assert messages("msk-iam-client-auth", MSK_SERVERLESS, good) == []
    (message,) = messages("msk-iam-client-auth", MSK_SERVERLESS, bad)
    assert "iam.enabled" in message


def test_msk_without_customer_managed_key_is_rejected() -> None:
    props = msk(encryptionInfo={"encryptionInTransit": {"clientBroker": "TLS"}})
    (message,) = messages("msk-encryption-at-rest-kms", MSK_CLUSTER, props)
    assert "encryptionAtRestKmsKeyArn" in message


# ---- SQS ---------------------------------------------------------------------------------------


def test_sqs_queue_with_sse_sqs_or_kms_passes() -> None:
    assert messages("sqs-encrypted", SQS_QUEUE, {"sqsManagedSseEnabled": True}) == []
    assert messages("sqs-encrypted", SQS_QUEUE, {"kmsMasterKeyId": KEY}) == []


@pytest.mark.parametrize("props", [{}, {"sqsManagedSseEnabled": False}])
def test_unencrypted_sqs_queue_is_rejected(props: dict[str, Any]) -> None:
    (message,) = messages("sqs-encrypted", SQS_QUEUE, props)
    assert "not encrypted" in message


def _queue(name: str, **props: Any) -> Any:
    return policy_resource(
        SQS_QUEUE, {"name": name, "sqsManagedSseEnabled": True, **props}, name=name
    )


def _redrive(source: str, dlq: str, **kw: Any) -> Any:
    policy = json.dumps({"deadLetterTargetArn": QUEUE_ARN + dlq, "maxReceiveCount": 5})
    return policy_resource(
        SQS_REDRIVE, {"queueUrl": QUEUE_URL + source, "redrivePolicy": policy}, name=source, **kw
    )


def _redrive_allow(dlq: str, source: str) -> Any:
    allow = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [QUEUE_ARN + source]})
    return policy_resource(
        SQS_REDRIVE_ALLOW, {"queueUrl": QUEUE_URL + dlq, "redriveAllowPolicy": allow}, name=dlq
    )


def test_job_queue_with_a_separate_redrive_policy_passes() -> None:
    resources = [_queue("jobs"), _queue("jobs-dlq"), _redrive("jobs", "jobs-dlq")]
    assert check_stack("sqs-job-queue-has-dlq", resources) == []


def test_job_queue_without_a_redrive_policy_is_rejected() -> None:
    jobs = _queue("jobs")
    (violation,) = check_stack("sqs-job-queue-has-dlq", [jobs])
    assert violation.urn == jobs.urn
    assert "has no dead-letter queue" in violation.message


def test_a_queue_is_a_dlq_only_when_something_redrives_to_it() -> None:
    # "orphan-dlq" is named like a DLQ but nothing redrives to it: it is a job queue without one.
    resources = [_queue("jobs"), _queue("jobs-dlq"), _redrive("jobs", "jobs-dlq"),
                 _queue("orphan-dlq")]  # fmt: skip
    (violation,) = check_stack("sqs-job-queue-has-dlq", resources)
    assert violation.urn.endswith("::orphan-dlq")


def test_a_queue_with_a_redrive_allow_policy_counts_as_a_dlq() -> None:
    resources = [_queue("jobs-dlq"), _redrive_allow("jobs-dlq", "jobs")]
    assert check_stack("sqs-job-queue-has-dlq", resources) == []


def test_inline_redrive_policy_passes() -> None:
    inline = json.dumps({"deadLetterTargetArn": QUEUE_ARN + "dlq", "maxReceiveCount": 3})
    resources = [_queue("jobs", redrivePolicy=inline), _queue("dlq")]
    assert check_stack("sqs-job-queue-has-dlq", resources) == []


def test_redrive_is_linked_through_property_dependencies_when_values_are_unknown() -> None:
    # During a first preview URLs and ARNs are unknown; the engine still sends which resources
    # each property depends on.
    jobs, dlq = _queue("jobs"), _queue("jobs-dlq")
    redrive = policy_resource(
        SQS_REDRIVE,
        {"queueUrl": "", "redrivePolicy": ""},
        name="jobs",
        property_dependencies={"queueUrl": [jobs], "redrivePolicy": [dlq]},
    )
    assert check_stack("sqs-job-queue-has-dlq", [jobs, dlq, redrive]) == []


# ---- RDS ---------------------------------------------------------------------------------------


def test_compliant_rds_instance_passes_in_prod() -> None:
    for name in ("rds-not-public", "rds-encrypted", "rds-deletion-protection-in-prod"):
        assert messages(name, RDS_INSTANCE, rds(), environment="prod") == [], name


def test_public_rds_instance_is_rejected() -> None:
    (message,) = messages("rds-not-public", RDS_INSTANCE, rds(publiclyAccessible=True))
    assert "publiclyAccessible" in message


@pytest.mark.parametrize("props", [rds(storageEncrypted=False), {"identifier": "db"}])
def test_unencrypted_rds_instance_is_rejected(props: dict[str, Any]) -> None:
    (message,) = messages("rds-encrypted", RDS_INSTANCE, props)
    assert "storageEncrypted" in message


def test_rds_without_deletion_protection_is_rejected_in_prod_only() -> None:
    props = rds(deletionProtection=False)
    (message,) = messages(
        "rds-deletion-protection-in-prod", RDS_INSTANCE, props, environment="prod"
    )
    assert "deletionProtection must be true in prod" in message
    assert messages("rds-deletion-protection-in-prod", RDS_INSTANCE, props, environment="dev") == []


def test_rds_proxy_without_tls_is_rejected() -> None:
    assert messages("rds-proxy-requires-tls", RDS_PROXY, {"requireTls": True}) == []
    (message,) = messages("rds-proxy-requires-tls", RDS_PROXY, {"requireTls": False})
    assert "requireTls" in message
    assert len(messages("rds-proxy-requires-tls", RDS_PROXY, {})) == 1


# ---- security groups ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "props", "cidr"),
    [
        (SECURITY_GROUP, {"ingress": [{"fromPort": 443, "toPort": 443, "protocol": "tcp",
                                       "cidrBlocks": ["10.0.0.0/16", "0.0.0.0/0"]}]}, "0.0.0.0/0"),
        (SECURITY_GROUP, {"ingress": [{"fromPort": 22, "toPort": 22, "protocol": "tcp",
                                       "ipv6CidrBlocks": ["::/0"]}]}, "::/0"),
        (SECURITY_GROUP_RULE, {"type": "ingress", "cidrBlocks": ["0.0.0.0/0"]}, "0.0.0.0/0"),
        (SG_INGRESS_RULE, {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "-1"}, "0.0.0.0/0"),
        (SG_INGRESS_RULE, {"cidrIpv6": "::/0", "ipProtocol": "-1"}, "::/0"),
    ],
)  # fmt: skip
def test_ingress_from_the_internet_is_rejected(
    type_: str, props: dict[str, Any], cidr: str
) -> None:
    (message,) = messages("no-open-ingress", type_, props)
    assert f"admits {cidr}" in message


def test_ingress_from_the_vpc_and_open_egress_pass() -> None:
    assert messages("no-open-ingress", SG_INGRESS_RULE, {"cidrIpv4": "10.0.0.0/16"}) == []
    egress = {"type": "egress", "cidrBlocks": ["0.0.0.0/0"]}
    assert messages("no-open-ingress", SECURITY_GROUP_RULE, egress) == []


# ---- IAM ---------------------------------------------------------------------------------------


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_NAMED = {"Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": QUEUE_ARN + "jobs"}
DENY_ALL = {"Effect": "Deny", "Action": "sqs:*", "Resource": "*", "Principal": "*"}


@pytest.mark.parametrize("type_", [IAM_ROLE_POLICY, IAM_POLICY])
@pytest.mark.parametrize("action", ["*", "sqs:*", ["s3:GetObject", "kafka-cluster:*"]])
def test_iam_allow_with_a_wildcard_action_is_rejected(type_: str, action: Any) -> None:
    props = {"policy": _doc(ALLOW_NAMED, {"Effect": "Allow", "Action": action, "Resource": "*"})}
    (message,) = messages("iam-no-wildcard-actions", type_, props)
    assert "wildcard action" in message


def test_iam_role_inline_policy_with_a_wildcard_action_is_rejected() -> None:
    inline = [
        {"name": "admin", "policy": _doc({"Effect": "Allow", "Action": "*", "Resource": "*"})}
    ]
    (message,) = messages("iam-no-wildcard-actions", IAM_ROLE, {"inlinePolicies": inline})
    assert "inlinePolicies[0] (admin)" in message


def test_iam_allow_with_not_action_is_rejected() -> None:
    props = {"policy": _doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})}
    (message,) = messages("iam-no-wildcard-actions", IAM_POLICY, props)
    assert "NotAction" in message


def test_iam_named_actions_and_wildcard_denies_pass() -> None:
    assert (
        messages("iam-no-wildcard-actions", IAM_POLICY, {"policy": _doc(ALLOW_NAMED, DENY_ALL)})
        == []
    )


# ---- logs and protection -----------------------------------------------------------------------


@pytest.mark.parametrize("props", [{"name": "/x"}, {"name": "/x", "retentionInDays": 0}])
def test_log_group_without_retention_is_rejected(props: dict[str, Any]) -> None:
    (message,) = messages("log-group-retention", LOG_GROUP, props)
    assert "retentionInDays" in message
    assert messages("log-group-retention", LOG_GROUP, {"retentionInDays": 30}) == []


@pytest.mark.parametrize("type_", rules.STATEFUL_TYPES)
def test_unprotected_stateful_resource_is_rejected_in_prod(type_: str) -> None:
    (message,) = messages("stateful-protected-in-prod", type_, {}, environment="prod")
    assert "not protected in prod" in message
    assert messages("stateful-protected-in-prod", type_, {}, environment="prod", protect=True) == []
    assert messages("stateful-protected-in-prod", type_, {}, environment="dev") == []


# ---- how the pack knows it is prod ---------------------------------------------------------------


def test_environment_comes_from_policy_config_first() -> None:
    assert rules.environment_of({"environment": "prod"}, {}, "dev") == "prod"


def test_environment_falls_back_to_the_stack_config_then_the_stack_name() -> None:
    assert rules.environment_of({}, {"jobstream:environment": "prod"}, "blue") == "prod"
    assert rules.environment_of({}, {}, "prod") == "prod"
    assert rules.environment_of({}, {"jobstream:environment": ""}, "dev") == "dev"
