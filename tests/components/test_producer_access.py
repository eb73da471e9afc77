"""The producers' managed policy follows the routes that exist in each phase."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.plan import PlanSet

POLICY = "aws:iam/policy:Policy"


def producer_policy(plans: PlanSet, stack: str, phase: int) -> dict[str, Any]:
    policy = plans.get(stack, phase).one(POLICY, "producers")
    assert policy.inputs["name"] == f"jobstream-{stack}-producer", policy.urn
    return json.loads(policy.inputs["policy"])


def sids(document: dict[str, Any]) -> set[str]:
    return {s["Sid"] for s in document["Statement"]}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (1, {"ReadRouting", "PutJobstreamMetrics", "SendJobs"}),
        (2, {"ReadRouting", "PutJobstreamMetrics", "SendJobs", "Connect", "WriteJobs"}),
        (4, {"ReadRouting", "PutJobstreamMetrics", "SendJobs", "Connect", "WriteJobs"}),
        (5, {"ReadRouting", "PutJobstreamMetrics", "Connect", "WriteJobs"}),
    ],
)
def test_policy_covers_exactly_the_routes_that_exist(
    plans: PlanSet, phase: int, expected: set[str]
) -> None:
    assert sids(producer_policy(plans, "dev", phase)) == expected


def test_producers_may_read_only_this_stacks_routing_parameter(plans: PlanSet) -> None:
    document = producer_policy(plans, "prod", 1)
    (read,) = [s for s in document["Statement"] if s["Sid"] == "ReadRouting"]
    assert read["Action"] == "ssm:GetParameter"
    assert read["Resource"].endswith(":parameter/jobstream/prod/routing")


def test_producers_may_send_only_to_the_job_queue(plans: PlanSet) -> None:
    (send,) = [s for s in producer_policy(plans, "dev", 3)["Statement"] if s["Sid"] == "SendJobs"]
    assert send["Action"] == "sqs:SendMessage"
    assert send["Resource"] == "arn:aws:sqs:us-east-1:123456789012:jobstream-dev-jobs"


def test_producers_write_only_the_jobs_topic(plans: PlanSet) -> None:
    (write,) = [s for s in producer_policy(plans, "dev", 3)["Statement"] if s["Sid"] == "WriteJobs"]
    assert write["Resource"].endswith("/jobstream.jobs"), write


def test_a_kms_encrypted_queue_adds_data_key_use_through_sqs_only(plans: PlanSet) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    plan = plans.get("dev", phase=1, overrides={"jobstream:queueKmsKeyArn": key})
    document = json.loads(plan.one(POLICY, "producers").inputs["policy"])
    (kms,) = [s for s in document["Statement"] if s["Sid"] == "EncryptJobs"]
    assert kms["Resource"] == key
    assert kms["Condition"] == {"StringLike": {"kms:ViaService": "sqs.*.amazonaws.com"}}


@pytest.mark.parametrize("phase", [1, 3, 5])
def test_producers_may_put_metrics_into_the_jobstream_namespace_only(
    plans: PlanSet, phase: int
) -> None:
    """Without it the producers' JobsPublished never reaches CloudWatch and the dual-write and
    parity figures of the preflight gates stay empty."""
    document = producer_policy(plans, "dev", phase)
    (put,) = [s for s in document["Statement"] if s["Sid"] == "PutJobstreamMetrics"]
    assert put["Action"] == "cloudwatch:PutMetricData"
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Jobstream"}}


def test_the_policy_arn_is_exported(plans: PlanSet) -> None:
    outputs = plans.get("dev", 1).outputs
    assert outputs["producerPolicyArn"] == "arn:aws:iam::123456789012:policy/jobstream-dev-producer"
