"""The routing parameter: one SSM String parameter per stack holding the routing contract.

Its value is the document of ``jobstream.contract.routing``, built by ``routing_for_phase`` (the
one function that the rehearsal and the tests call too) from the phase table and the other
components' outputs: the phase, where producers publish (the first target is the primary), each
route's consumer mode, and where the queues and topics are. The document is validated twice: once
when the program runs, with placeholders for the values only AWS knows (so a phase that needs a
place the stack did not give fails ``pulumi preview``), and again on the real values. A phase change
rewrites this one value and the services follow it (cached with a short TTL) without a redeploy.
Only the roles granted with ``grant_read`` may read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import policy_document
from jobstream.contract.phases import Phase
from jobstream.contract.routing import routing_for_phase

_PLACEHOLDER = "<known after deploy>"


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


def _places(args: RoutingArgs) -> Mapping[str, pulumi.Input[str] | None]:
    return {
        "queue_url": args.queue_url,
        "dlq_url": args.dlq_url,
        "topic": args.topic,
        "dead_letter_topic": args.dead_letter_topic,
        "bootstrap_brokers": args.bootstrap_brokers,
        "consumer_group": args.consumer_group,
    }


def _document(args: RoutingArgs, places: Mapping[str, str | None]) -> str:
    return routing_for_phase(
        args.phase,
        stack=args.stack,
        queue_url=places.get("queue_url"),
        dlq_url=places.get("dlq_url"),
        topic=places.get("topic"),
        dead_letter_topic=places.get("dead_letter_topic"),
        bootstrap_brokers=places.get("bootstrap_brokers"),
        consumer_group=places.get("consumer_group"),
    ).to_json()


def routing_value(args: RoutingArgs) -> pulumi.Output[str]:
    """The parameter's value: the validated routing document as JSON."""
    places = _places(args)
    # Fails now (not at deploy time) when the phase needs a place the stack did not give.
    _document(args, {k: None if v is None else _PLACEHOLDER for k, v in places.items()})
    present = {k: v for k, v in places.items() if v is not None}
    return pulumi.Output.all(**present).apply(lambda resolved: _document(args, resolved))


class RoutingParameter(pulumi.ComponentResource):
    parameter_name: pulumi.Output[str]
    parameter_arn: pulumi.Output[str]
    value: pulumi.Output[str]

    def __init__(
        self, name: str, args: RoutingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:routing:RoutingParameter", name, None, opts)
        self._name = name
        value = routing_value(args)
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
