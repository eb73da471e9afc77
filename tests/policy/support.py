"""Feeding resources to the policies the way the engine does, without a policy server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.plan import Plan
from policy.rules import POLICIES

STACK = "dev"


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str

    def __str__(self) -> str:
        return f"[{self.policy}] {self.urn}: {self.message}"


def options(protect: bool = False, parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=parent,
    )


def urn_of(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::jobstream::{type_}::{name}"


def resource_args(
    type_: str,
    props: Mapping[str, Any],
    *,
    name: str = "subject",
    protect: bool = False,
    environment: str = "dev",
    urn: str | None = None,
) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        resource_type=type_,
        props=props,
        urn=urn or urn_of(type_, name),
        name=name,
        opts=options(protect),
        provider=None,
        config={"environment": environment},
    )


def policy_resource(
    type_: str,
    props: Mapping[str, Any],
    *,
    name: str,
    protect: bool = False,
    property_dependencies: dict[str, list[PolicyResource]] | None = None,
) -> PolicyResource:
    return PolicyResource(
        resource_type=type_,
        props=props,
        urn=urn_of(type_, name),
        name=name,
        opts=options(protect),
        provider=None,
        parent=None,
        dependencies=[],
        property_dependencies=property_dependencies or {},
    )


def policy(name: str) -> Policy:
    (found,) = (p for p in POLICIES if p.name == name)
    return found


def check_resource(name: str, args: ResourceValidationArgs) -> list[Violation]:
    rule = policy(name)
    assert isinstance(rule, ResourceValidationPolicy)
    found: list[Violation] = []
    rule.validate(args, lambda message, urn=None: found.append(Violation(name, args.urn, message)))
    return found


def check_stack(
    name: str, resources: list[PolicyResource], environment: str = "dev"
) -> list[Violation]:
    rule = policy(name)
    assert isinstance(rule, StackValidationPolicy)
    found: list[Violation] = []
    rule.validate(
        StackValidationArgs(resources, config={"environment": environment}),
        lambda message, urn=None: found.append(Violation(name, urn or "(stack)", message)),
    )
    return found


def plan_policy_resources(plan: Plan) -> list[PolicyResource]:
    """The plan's resources as a stack policy receives them (parents and dependencies linked)."""
    by_urn = {
        r.urn: PolicyResource(
            resource_type=r.type,
            props=r.inputs,
            urn=r.urn,
            name=r.name,
            opts=options(r.protect, r.parent),
            provider=None,
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
        for r in plan.resources
    }
    for r in plan.resources:
        resource = by_urn[r.urn]
        resource.parent = by_urn.get(r.parent or "")
        resource.dependencies = [by_urn[d] for d in r.dependencies if d in by_urn]
    return list(by_urn.values())


def check_plan(plan: Plan) -> tuple[list[Violation], int]:
    """Every policy over every resource of the plan: (violations, validations run)."""
    environment = plan.config.environment.value
    found: list[Violation] = []
    runs = 0
    for rule in POLICIES:
        if isinstance(rule, ResourceValidationPolicy):
            for r in plan.resources:
                args = resource_args(
                    r.type, r.inputs, name=r.name, protect=r.protect, environment=environment,
                    urn=r.urn,
                )  # fmt: skip
                rule.validate(
                    args,
                    lambda message, urn=None, rule=rule, r=r, sink=found: sink.append(
                        Violation(rule.name, r.urn, message)
                    ),
                )
                runs += 1
        elif isinstance(rule, StackValidationPolicy):
            found += check_stack(rule.name, plan_policy_resources(plan), environment)
            runs += 1
    return found, runs
