"""Security groups and their rules, one TCP port per rule resource.

Every rule is its own ``aws.vpc.SecurityGroup{Ingress,Egress}Rule`` (never inline in the
group), so a component can open a group to another one later (``allow_client``) without
changing the group's inputs; and each rule names one peer, a group or a CIDR block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

HTTPS_PORT = 443
POSTGRES_PORT = 5432
ANYWHERE = "0.0.0.0/0"


def security_group(
    parent: pulumi.Resource,
    name: str,
    *,
    vpc_id: pulumi.Input[str],
    description: str,
    tag_name: str,
) -> aws.ec2.SecurityGroup:
    """A group without inline rules (AWS's default allow-all egress is dropped on creation)."""
    return aws.ec2.SecurityGroup(
        name,
        vpc_id=vpc_id,
        description=description,
        tags={"Name": tag_name},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def tcp_rule(
    parent: pulumi.Resource,
    name: str,
    direction: Literal["ingress", "egress"],
    *,
    group_id: pulumi.Input[str],
    port: int,
    description: str,
    peer_group: pulumi.Input[str] | None = None,
    peer_cidr: str | None = None,
) -> pulumi.CustomResource:
    """Open ``port`` of ``group_id`` inbound from, or outbound to, exactly one peer: a security
    group or a CIDR block."""
    if (peer_group is None) == (peer_cidr is None):
        raise ValueError("a rule names exactly one peer: a security group or a CIDR block")
    rule = (
        aws.vpc.SecurityGroupIngressRule
        if direction == "ingress"
        else aws.vpc.SecurityGroupEgressRule
    )
    return rule(
        name,
        security_group_id=group_id,
        description=description,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=peer_group,
        cidr_ipv4=peer_cidr,
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class Rule:
    """One rule of a group built here: its logical name and its description."""

    name: str
    description: str


def worker_security_group(
    parent: pulumi.Resource,
    name: str,
    *,
    vpc_id: pulumi.Input[str],
    description: str,
    tag_name: str,
    https: Rule,
    postgres: Rule,
    proxy_security_group_id: pulumi.Input[str],
) -> aws.ec2.SecurityGroup:
    """The egress-only group of containers that run ``jobstream-worker`` (the Batch jobs, the
    Kafka consumer tasks): HTTPS anywhere (AWS APIs through the endpoints or the NAT, the image
    registry) and PostgreSQL to the RDS Proxy only. Nothing may connect to them; Kafka egress
    comes with ``Kafka.allow_client``, which opens both ends."""
    group = security_group(parent, name, vpc_id=vpc_id, description=description, tag_name=tag_name)
    egress: tuple[tuple[Rule, int, pulumi.Input[str] | None, str | None], ...] = (
        (https, HTTPS_PORT, None, ANYWHERE),
        (postgres, POSTGRES_PORT, proxy_security_group_id, None),
    )
    for rule, port, peer_group, peer_cidr in egress:
        tcp_rule(
            parent,
            rule.name,
            "egress",
            group_id=group.id,
            port=port,
            description=rule.description,
            peer_group=peer_group,
            peer_cidr=peer_cidr,
        )
    return group
