"""The SQS job queue and its dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import Grant, policy_document

LONG_POLL_SECONDS = 20
CONSUME_ACTIONS: tuple[str, ...] = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
)
SQS_VIA_SERVICE = "sqs.*.amazonaws.com"


@dataclass(frozen=True)
class JobQueueArgs:
    queue_name: str
    dead_letter_queue_name: str
    visibility_timeout_seconds: int
    retention_seconds: int
    dlq_retention_seconds: int
    max_receive_count: int
    kms_key_arn: str | None
    """A customer-managed KMS key; when unset the queues use SQS-managed encryption (SSE-SQS)."""
    protect: bool
    queue_import_id: str | None
    """The URL of a running queue to import (adopt) as the job queue instead of creating one;
    ``queue_name`` must then be its name. An adopted queue is always protected."""
    dlq_import_id: str | None
    """The same for the dead-letter queue."""


class JobQueue(pulumi.ComponentResource):
    queue_url: pulumi.Output[str]
    queue_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    dlq_url: pulumi.Output[str]
    dlq_arn: pulumi.Output[str]
    dlq_name: pulumi.Output[str]
    kms_key_arn: str | None
    """The customer-managed key of both queues (None: SSE-SQS, which needs no key grant)."""

    def __init__(
        self, name: str, args: JobQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:queue:JobQueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def stateful(import_id: str | None) -> pulumi.ResourceOptions:
            # An adopted queue holds the jobs of the platform running today: protected from the
            # first `pulumi up` on, whatever the stack's default.
            return pulumi.ResourceOptions(
                parent=self, protect=args.protect or import_id is not None, import_=import_id
            )

        encryption: dict[str, object] = (
            {"kms_master_key_id": args.kms_key_arn, "kms_data_key_reuse_period_seconds": 300}
            if args.kms_key_arn
            else {"sqs_managed_sse_enabled": True}
        )
        dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=args.dead_letter_queue_name,
            message_retention_seconds=args.dlq_retention_seconds,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            opts=stateful(args.dlq_import_id),
            **encryption,  # pyright: ignore[reportArgumentType]
        )
        queue = aws.sqs.Queue(
            name,
            name=args.queue_name,
            message_retention_seconds=args.retention_seconds,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            opts=stateful(args.queue_import_id),
            **encryption,  # pyright: ignore[reportArgumentType]
        )
        # Redrive as separate resources: inline redrive_policy / redrive_allow_policy on the
        # queues form a dependency cycle (each needs the other's ARN).
        aws.sqs.RedrivePolicy(
            name,
            queue_url=queue.url,
            redrive_policy=pulumi.Output.json_dumps(
                {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": args.max_receive_count}
            ),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq",
            queue_url=dlq.url,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [queue.arn]}
            ),
            opts=child,
        )
        for logical, target in ((name, queue), (f"{name}-dlq", dlq)):
            aws.sqs.QueuePolicy(
                logical,
                queue_url=target.url,
                policy=_deny_insecure_transport(target.arn, self),
                opts=child,
            )

        self.queue_url, self.queue_arn, self.queue_name = queue.url, queue.arn, queue.name
        self.dlq_url, self.dlq_arn, self.dlq_name = dlq.url, dlq.arn, dlq.name
        self.kms_key_arn = args.kms_key_arn
        self.register_outputs(
            {"queueUrl": queue.url, "queueArn": queue.arn, "dlqUrl": dlq.url, "dlqArn": dlq.arn}
        )

    # ---- grants: what a principal needs on the job queue (and on its key) ----------------------

    def grant_send(self) -> Grant:
        """Publish jobs (the producers): SendMessage on the job queue; with a customer-managed
        key, the data key that SendMessage encrypts with, used through SQS only."""
        key: tuple[dict[str, Any], ...] = ()
        if self.kms_key_arn:
            key = (
                {
                    "sid": "EncryptJobs",
                    "actions": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "resources": [self.kms_key_arn],
                    "conditions": [
                        {
                            "test": "StringLike",
                            "variable": "kms:ViaService",
                            "values": [SQS_VIA_SERVICE],
                        }
                    ],
                },
            )
        return Grant(
            on_resource=(
                {"sid": "SendJobs", "actions": ["sqs:SendMessage"], "resources": [self.queue_arn]},
            ),
            on_key=key,
        )

    def grant_consume(self) -> Grant:
        """Take jobs off the job queue (the pipe): receive, delete, extend visibility, read its
        attributes; with a customer-managed key, decrypt what it receives."""
        key: tuple[dict[str, Any], ...] = ()
        if self.kms_key_arn:
            key = (
                {
                    "sid": "DecryptJobQueue",
                    "actions": ["kms:Decrypt"],
                    "resources": [self.kms_key_arn],
                },
            )
        return Grant(
            on_resource=(
                {
                    "sid": "ReadJobQueue",
                    "actions": list(CONSUME_ACTIONS),
                    "resources": [self.queue_arn],
                },
            ),
            on_key=key,
        )


def _deny_insecure_transport(
    queue_arn: pulumi.Output[str], parent: pulumi.Resource
) -> pulumi.Output[str]:
    return policy_document(
        parent,
        [
            {
                "sid": "DenyInsecureTransport",
                "effect": "Deny",
                "principals": [{"type": "*", "identifiers": ["*"]}],
                "actions": ["sqs:*"],
                "resources": [queue_arn],
                "conditions": [
                    {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}
                ],
            }
        ],
    )
