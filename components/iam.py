"""IAM policy documents through ``aws.iam.get_policy_document`` (no hand-built JSON).

Statements are plain dicts with the data source's keys (``sid``, ``effect``, ``actions``,
``resources``, ``principals`` = [{type, identifiers}], ``conditions`` = [{test, variable,
values}]); any value may be a ``pulumi.Output`` (an ARN of another resource).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Grant:
    """What a principal needs to do one thing with one resource, as the resource states it (the
    AWS CDK's ``queue.grantSendMessages(role)``): the statements on the resource itself and, when
    the resource is encrypted with a customer-managed KMS key, those on the key.

    The grantee puts them into a policy it already owns, so a grant adds no resource of its own;
    the two parts are kept apart because a grantee's document may hold its own statements
    between them (the order of a live policy document is part of its value)."""

    on_resource: tuple[Mapping[str, Any], ...]
    on_key: tuple[Mapping[str, Any], ...] = ()

    @property
    def statements(self) -> list[Mapping[str, Any]]:
        return [*self.on_resource, *self.on_key]


def policy_document(
    parent: pulumi.Resource,
    statements: Sequence[Mapping[str, Any]],
    *,
    sources: Sequence[pulumi.Input[str]] = (),
) -> pulumi.Output[str]:
    """One IAM JSON document: the ``sources`` documents' statements, then ``statements`` (the
    data source's ``source_policy_documents``; a statement with the same sid replaces one)."""
    # Output.from_input resolves Outputs nested anywhere in the statements.
    resolved: pulumi.Output[Any] = pulumi.Output.from_input([dict(s) for s in statements])
    return aws.iam.get_policy_document_output(
        statements=resolved,
        source_policy_documents=pulumi.Output.all(*sources) if sources else None,
        opts=pulumi.InvokeOutputOptions(parent=parent),
    ).json


def service_principal(service: str) -> dict[str, Any]:
    return {"type": "Service", "identifiers": [service]}


def assume_role_policy(
    parent: pulumi.Resource,
    service: str,
    *,
    source_account: pulumi.Input[str] | None = None,
    source_arn_like: pulumi.Input[str] | None = None,
) -> pulumi.Output[str]:
    """Trust policy letting one AWS service assume a role, optionally only on behalf of this
    account (``aws:SourceAccount``) and of matching resources (``aws:SourceArn``): the
    confused-deputy protection the services' documentation recommends."""
    statement: dict[str, Any] = {
        "actions": ["sts:AssumeRole"],
        "principals": [service_principal(service)],
    }
    conditions: list[dict[str, Any]] = []
    if source_account is not None:
        conditions.append(
            {"test": "StringEquals", "variable": "aws:SourceAccount", "values": [source_account]}
        )
    if source_arn_like is not None:
        conditions.append(
            {"test": "ArnLike", "variable": "aws:SourceArn", "values": [source_arn_like]}
        )
    if conditions:
        statement["conditions"] = conditions
    return policy_document(parent, [statement])


def put_metrics_statement(namespace: str) -> dict[str, Any]:
    """``cloudwatch:PutMetricData`` into one namespace only. The action has no resource-level
    permissions (the resource must be ``*``); the ``cloudwatch:namespace`` condition key limits it
    (Service Authorization Reference, Amazon CloudWatch)."""
    return {
        "sid": "PutJobstreamMetrics",
        "actions": ["cloudwatch:PutMetricData"],
        "resources": ["*"],
        "conditions": [
            {"test": "StringEquals", "variable": "cloudwatch:namespace", "values": [namespace]}
        ],
    }
