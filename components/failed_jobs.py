"""The failed-jobs capture: every AWS Batch job of the job queue that fails for good, kept with its
message and the reason, where the operator commands find it (``jobstream parked`` / ``redrive``).

The pipe deletes an SQS message once ``SubmitJob`` succeeds ("When your pipe successfully
processes a batch, EventBridge deletes its messages from the queue", EventBridge Pipes, Amazon SQS
source), so from then on the job queue owns the job and the SQS DLQ never sees it again. AWS
Batch emits a ``Batch Job State Change`` event when a job reaches ``FAILED`` (after its last
attempt, whatever ended it: an application error, a poison message, the attempt timeout, a
container killed on its last attempt); its ``detail`` is the job as ``DescribeJobs`` returns it,
with the container's environment (the message body the pipe passed as ``JOBSTREAM_JOB_MESSAGE``),
the status reason and each attempt's exit code. An EventBridge rule sends that event, whole, to an
SQS queue:

- robust to the container dying: the event comes from AWS Batch, not from the job itself;
- encrypted with SQS-managed keys (SSE-SQS): EventBridge can deliver to it without a key policy
  (it cannot deliver to a queue under the AWS-managed ``alias/aws/sqs`` key);
- admitted by a queue policy for ``events.amazonaws.com`` from this rule only (``aws:SourceArn``);
- kept 14 days (the SQS maximum); the stack alarms on its depth and on the rule's
  ``FailedInvocations`` (a delivery EventBridge gave up on after its retries);
- a terminal parking place: its redrive-allow policy denies every queue from using it as a
  dead-letter queue, and nothing consumes it but the operator commands;
- protected with the other stateful resources (prod): it holds jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import policy_document, service_principal

MAX_RETENTION_SECONDS = 1_209_600
EVENT_SOURCE = "aws.batch"
EVENT_DETAIL_TYPE = "Batch Job State Change"
FAILED = "FAILED"


@dataclass(frozen=True)
class FailedJobsArgs:
    queue_name: str
    rule_name: str
    job_queue_arn: pulumi.Input[str]
    """The Batch job queue whose failed jobs are captured."""
    protect: bool
    retention_seconds: int = MAX_RETENTION_SECONDS


def failed_job_pattern(job_queue_arn: pulumi.Input[str]) -> Mapping[str, Any]:
    """The EventBridge pattern of a job of this job queue that reached FAILED."""
    return {
        "source": [EVENT_SOURCE],
        "detail-type": [EVENT_DETAIL_TYPE],
        "detail": {"status": [FAILED], "jobQueue": [job_queue_arn]},
    }


class FailedJobsCapture(pulumi.ComponentResource):
    queue_url: pulumi.Output[str]
    queue_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    rule_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FailedJobsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:failedjobs:FailedJobsCapture", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        queue = aws.sqs.Queue(
            name,
            name=args.queue_name,
            message_retention_seconds=args.retention_seconds,
            sqs_managed_sse_enabled=True,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.sqs.RedriveAllowPolicy(
            name,
            queue_url=queue.url,
            redrive_allow_policy=pulumi.Output.json_dumps({"redrivePermission": "denyAll"}),
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            name,
            name=args.rule_name,
            description=f"AWS Batch jobs that failed for good -> {args.queue_name}",
            event_pattern=pulumi.Output.json_dumps(failed_job_pattern(args.job_queue_arn)),
            opts=child,
        )
        policy = aws.sqs.QueuePolicy(
            name,
            queue_url=queue.url,
            policy=policy_document(
                self,
                [
                    {
                        "sid": "FailedJobEvents",
                        "principals": [service_principal("events.amazonaws.com")],
                        "actions": ["sqs:SendMessage"],
                        "resources": [queue.arn],
                        "conditions": [
                            {"test": "ArnEquals", "variable": "aws:SourceArn", "values": [rule.arn]}
                        ],
                    },
                    {
                        "sid": "DenyInsecureTransport",
                        "effect": "Deny",
                        "principals": [{"type": "*", "identifiers": ["*"]}],
                        "actions": ["sqs:*"],
                        "resources": [queue.arn],
                        "conditions": [
                            {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}
                        ],
                    },
                ],
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            name,
            rule=rule.name,
            arn=queue.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=86_400, maximum_retry_attempts=185
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.queue_url, self.queue_arn, self.queue_name = queue.url, queue.arn, queue.name
        self.rule_name = rule.name
        self.register_outputs({"queueUrl": queue.url, "queueArn": queue.arn, "ruleName": rule.name})
