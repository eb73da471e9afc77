"""Helpers for reading component resources out of an offline plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from infra.mocks import PlanMocks
from infra.plan import Plan, PlannedResource

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def security_group_id(plan: Plan, logical_name: str) -> str:
    """The id the mock engine gives the security group with this logical name (rules carry it)."""
    group = plan.one(SECURITY_GROUP, logical_name)
    return PlanMocks(plan.config.region)._resource_id(
        "ec2", "SecurityGroup", group.name, group.name
    )


def rules_on(plan: Plan, rule_type: str, group_id: str) -> list[PlannedResource]:
    return [r for r in plan.of_type(rule_type) if r.inputs.get("securityGroupId") == group_id]


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted key path, value) pair in a nested input structure."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from walk(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from walk(inner, f"{path}[{i}]")
    else:
        yield path, value


def in_component(plan: Plan, resource: PlannedResource, component_type: str) -> bool:
    component = plan.component_of(resource)
    return component is not None and component.type == component_type
