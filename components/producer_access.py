"""What a producer (the backend API, outside this stack) needs to publish jobs: one managed IAM
policy to attach to its role, covering exactly the routes that exist in the phase.

The policy grants reading the routing parameter, putting metrics into the ``Jobstream``
namespace (and nothing else of CloudWatch), sending to the SQS job queue while the queue exists
(phases 1-4: in phase 4 SQS takes no new writes, but a rollback to 3 flips the routing back
before any policy could follow, so the grant stays while the queue does), and the Kafka producer
statements while the cluster exists. The producers' security groups reach the brokers
through ``Kafka.allow_client`` (the stack wires that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import Grant, policy_document, put_metrics_statement
from jobstream.contract.metrics import NAMESPACE as METRICS_NAMESPACE


@dataclass(frozen=True)
class ProducerAccessArgs:
    policy_name: str
    routing_parameter_arn: pulumi.Input[str]
    send_jobs: Grant | None = None
    """``JobQueue.grant_send()``, while the SQS job queue exists."""
    kafka_producer_policy: pulumi.Input[str] | None = None
    """The Kafka component's producer policy document, while the cluster exists."""


class ProducerAccess(pulumi.ComponentResource):
    policy_arn: pulumi.Output[str]
    policy_document: pulumi.Output[str]

    def __init__(
        self, name: str, args: ProducerAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:producers:ProducerAccess", name, None, opts)
        statements: list[Mapping[str, Any]] = [
            {
                "sid": "ReadRouting",
                "actions": ["ssm:GetParameter"],
                "resources": [args.routing_parameter_arn],
            },
            put_metrics_statement(METRICS_NAMESPACE),
        ]
        if args.send_jobs is not None:
            statements += args.send_jobs.statements
        sources = [args.kafka_producer_policy] if args.kafka_producer_policy is not None else []
        self.policy_document = policy_document(self, statements, sources=sources)
        policy = aws.iam.Policy(
            name,
            name=args.policy_name,
            description="jobstream producers: read the routing parameter, publish to its routes",
            policy=self.policy_document,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.policy_arn = policy.arn
        self.register_outputs({"policyArn": policy.arn})
