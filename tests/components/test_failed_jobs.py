"""The failed-jobs capture: a Batch job that fails for good is kept with its message, in every
phase that has Batch, robust to the container dying (the event comes from AWS Batch)."""

from __future__ import annotations

import json

import pytest

from infra.plan import Plan, PlanSet

QUEUE = "aws:sqs/queue:Queue"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
POLICY = "aws:sqs/queuePolicy:QueuePolicy"
ALLOW = "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy"
CAPTURE = "jobstream:failedjobs:FailedJobsCapture"


def capture(plan: Plan, type_: str) -> list:  # type: ignore[type-arg]
    parents = {r.urn for r in plan.resources if r.type == CAPTURE}
    return [r for r in plan.of_type(type_) if r.parent in parents]


@pytest.mark.parametrize("phase", [1, 2, 3, 4])
def test_every_phase_with_batch_captures_failed_jobs(plans: PlanSet, phase: int) -> None:
    plan = plans.get("dev", phase)
    (queue,) = capture(plan, QUEUE)
    assert queue.inputs["name"] == "jobstream-dev-failed-jobs", queue.urn
    assert plan.outputs["failedJobsQueueUrl"].endswith("/jobstream-dev-failed-jobs")


def test_cleanup_has_no_capture_because_it_has_no_batch(plans: PlanSet) -> None:
    assert [r.urn for r in plans.get("dev", 5).resources if r.type == CAPTURE] == []


def test_the_rule_matches_failed_jobs_of_this_job_queue_only(plans: PlanSet) -> None:
    """AWS Batch emits 'Batch Job State Change' when a job reaches FAILED after its last attempt;
    detail.jobQueue is the job queue's ARN (AWS Batch user guide, EventBridge events)."""
    plan = plans.get("dev", 1)
    (rule,) = capture(plan, RULE)
    assert json.loads(rule.inputs["eventPattern"]) == {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {
            "status": ["FAILED"],
            "jobQueue": ["arn:aws:batch:us-east-1:123456789012:job-queue/jobstream-dev-jobs"],
        },
    }


def test_the_whole_event_goes_to_the_queue_with_retries(plans: PlanSet) -> None:
    """No input transformer: the event keeps the job's environment (the message body), its status
    reason and every attempt's exit code."""
    plan = plans.get("dev", 1)
    (target,) = capture(plan, TARGET)
    assert target.inputs["arn"] == "arn:aws:sqs:us-east-1:123456789012:jobstream-dev-failed-jobs"
    assert "inputTransformer" not in target.inputs and "input" not in target.inputs
    assert target.inputs["retryPolicy"] == {
        "maximumEventAgeInSeconds": 86400,
        "maximumRetryAttempts": 185,
    }


def test_only_this_rule_may_send_to_the_queue(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    (policy,) = capture(plan, POLICY)
    allow, deny = json.loads(policy.inputs["policy"])["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {
        "ArnEquals": {
            "aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/jobstream-dev-failed-jobs"
        }
    }
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_the_queue_is_encrypted_with_sqs_managed_keys_and_keeps_14_days(plans: PlanSet) -> None:
    """EventBridge can deliver to SSE-SQS queues; not to a queue under alias/aws/sqs."""
    (queue,) = capture(plans.get("dev", 1), QUEUE)
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert "kmsMasterKeyId" not in queue.inputs
    assert queue.inputs["messageRetentionSeconds"] == 1_209_600


def test_the_queue_is_a_terminal_parking_place(plans: PlanSet) -> None:
    (allow,) = capture(plans.get("dev", 1), ALLOW)
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {"redrivePermission": "denyAll"}


def test_the_queue_is_protected_in_prod_like_the_other_queues(plans: PlanSet) -> None:
    (queue,) = capture(plans.get("prod", 1), QUEUE)
    assert queue.protect, queue.urn
    (queue,) = capture(plans.get("dev", 1), QUEUE)
    assert not queue.protect
