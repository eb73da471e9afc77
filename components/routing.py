"""The routing parameter: one SSM String parameter per stack holding the routing contract.

Its value is the JSON document that ``messaging.routing.Routing`` parses (DESIGN.md, the routing
contract): the phase, where producers publish (the first target is the primary), each route's
consumer mode, and where the queues and topics are. It is built from the phase table and the
other components' outputs, so a phase change rewrites this one value and the services follow it
(cached with a short TTL) without a redeploy. Only the roles granted with ``grant_read`` may
read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import policy_document
from infra.phases import Phase, Route
from messaging.routing import KAFKA_AUTH_IAM, ROUTING_VERSION


@dataclass(frozen=True)
class RoutingArgs:
    parameter_name: str
    stack: str
    phase: Phase
    queue_url: pulumi.Input[str] | None = None
    dlq_url: pulumi.Input[str] | None = None
    topic: str | None = None
    dead_letter_topic: str | None = None
    bootstrap_brokers: pulumi.Input[str] | None = None
    consumer_group: str | None = None


def routing_document(args: RoutingArgs) -> dict[str, Any]:
    """The routing contract for one stack and phase (values may be Outputs)."""
    kafka = args.bootstrap_brokers is not None
    return {
        "version": ROUTING_VERSION,
        "stack": args.stack,
        "phase": args.phase.number,
        "publish_targets": [route.value for route in args.phase.publish_targets],
        "consumer_modes": {route.value: args.phase.consumer_modes[route].value for route in Route},
        "queue_url": args.queue_url,
        "dlq_url": args.dlq_url,
        "topic": args.topic,
        "dead_letter_topic": args.dead_letter_topic,
        "bootstrap_brokers": args.bootstrap_brokers,
        "consumer_group": args.consumer_group,
        "kafka_auth": KAFKA_AUTH_IAM if kafka else None,
    }


class RoutingParameter(pulumi.ComponentResource):
    parameter_name: pulumi.Output[str]
    parameter_arn: pulumi.Output[str]
    value: pulumi.Output[str]

    def __init__(
        self, name: str, args: RoutingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:routing:RoutingParameter", name, None, opts)
        self._name = name
        value = pulumi.Output.json_dumps(routing_document(args))
        parameter = aws.ssm.Parameter(
            name,
            name=args.parameter_name,
            type=aws.ssm.ParameterType.STRING,
            tier="Standard",
            data_type="text",
            description=f"jobstream routing for stack {args.stack} (read by producers and consumers)",
            # Not a secret: insecure_value keeps it readable in previews and diffs (``value``
            # is always marked secret by the provider).
            insecure_value=value,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.parameter_name = parameter.name
        self.parameter_arn = parameter.arn
        self.value = value
        self.register_outputs({"parameterName": parameter.name, "parameterArn": parameter.arn})

    def grant_read(self, name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let one role read this parameter (``ssm:GetParameter`` on its ARN, nothing else)."""
        return aws.iam.RolePolicy(
            f"{self._name}-read-{name}",
            role=role.id,
            policy=policy_document(
                self,
                [
                    {
                        "sid": "ReadRouting",
                        "actions": ["ssm:GetParameter"],
                        "resources": [self.parameter_arn],
                    }
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
