"""The SQS job queue component, through the offline plan."""

from __future__ import annotations

import json

from infra.plan import Plan, PlannedResource, PlanSet
from tests.components.conftest import in_component

QUEUE = "aws:sqs/queue:Queue"
JOB_QUEUE = "jobstream:queue:JobQueue"


def job_queues(plan: Plan) -> list[PlannedResource]:
    """The job queue and its DLQ (the failed-jobs capture has its own tests)."""
    return [q for q in plan.of_type(QUEUE) if in_component(plan, q, JOB_QUEUE)]


def test_job_queue_has_exactly_one_redrive_policy_to_its_dlq(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    (redrive,) = plan.of_type("aws:sqs/redrivePolicy:RedrivePolicy")
    policy = json.loads(redrive.inputs["redrivePolicy"])
    dlq = plan.one(QUEUE, "jobs-dlq")
    assert redrive.inputs["queueUrl"].endswith("/jobstream-dev-jobs"), redrive.urn
    assert policy == {
        "deadLetterTargetArn": f"arn:aws:sqs:us-east-1:123456789012:{dlq.inputs['name']}",
        "maxReceiveCount": 5,
    }


def test_dlq_only_accepts_redrive_from_the_job_queue(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    (allow,) = [
        r
        for r in plan.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
        if in_component(plan, r, JOB_QUEUE)
    ]
    policy = json.loads(allow.inputs["redriveAllowPolicy"])
    assert policy == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": ["arn:aws:sqs:us-east-1:123456789012:jobstream-dev-jobs"],
    }


def test_queues_do_not_use_inline_redrive_settings(plans: PlanSet) -> None:
    for q in job_queues(plans.get("dev", 1)):
        assert "redrivePolicy" not in q.inputs and "redriveAllowPolicy" not in q.inputs, q.urn


def test_queues_are_encrypted_with_sqs_managed_keys_by_default(plans: PlanSet) -> None:
    for q in job_queues(plans.get("dev", 1)):
        assert q.inputs.get("sqsManagedSseEnabled") is True, f"{q.urn} is not encrypted at rest"


def test_queues_use_the_kms_key_when_one_is_given(plans: PlanSet) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    plan = plans.get("dev", phase=1, overrides={"jobstream:queueKmsKeyArn": key})
    for q in job_queues(plan):
        assert q.inputs["kmsMasterKeyId"] == key, q.urn
        assert "sqsManagedSseEnabled" not in q.inputs, q.urn


def test_queues_long_poll_for_20_seconds(plans: PlanSet) -> None:
    for q in job_queues(plans.get("dev", 1)):
        assert q.inputs["receiveWaitTimeSeconds"] == 20, q.urn


def test_visibility_timeout_and_retention_come_from_config(plans: PlanSet) -> None:
    plan = plans.get(
        "dev",
        phase=1,
        overrides={
            "jobstream:queueVisibilityTimeoutSeconds": "2400",
            "jobstream:queueRetentionSeconds": "86400",
        },
    )
    q = plan.one(QUEUE, "jobs")
    assert (q.inputs["visibilityTimeoutSeconds"], q.inputs["messageRetentionSeconds"]) == (
        2400,
        86400,
    ), q.urn


def test_every_queue_denies_requests_without_tls(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    policies = {
        p.inputs["queueUrl"]: json.loads(p.inputs["policy"])
        for p in plan.of_type("aws:sqs/queuePolicy:QueuePolicy")
        if in_component(plan, p, JOB_QUEUE)
    }
    for q in job_queues(plan):
        url = f"https://sqs.us-east-1.amazonaws.com/123456789012/{q.inputs['name']}"
        assert url in policies, f"{q.urn} has no queue policy"
        (statement,) = policies[url]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Principal"] == "*", q.urn
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, q.urn
        assert statement["Resource"].endswith(f":{q.inputs['name']}"), q.urn


def test_queues_are_protected_in_prod_only(plans: PlanSet) -> None:
    assert all(q.protect for q in plans.get("prod", 1).of_type(QUEUE))
    assert not any(q.protect for q in plans.get("dev", 1).of_type(QUEUE))
    assert len(job_queues(plans.get("prod", 1))) == 2
