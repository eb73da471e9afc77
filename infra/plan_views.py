"""Readable views of an offline plan: the component diagram (mermaid), the resource counts per
component, and every IAM policy document it holds (for the linters and tests)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from infra.mocks import PlanMocks
from infra.plan import Plan, PlannedResource
from jobstream.contract.names import Names

# ---- a diagram -----------------------------------------------------------------------------


SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE = "aws:iam/role:Role"
NAME_KEYS = ("name", "identifier", "clusterName")
"""Inputs that hold a resource's physical name (``jobstream.contract.names``)."""
ROLE_GRANTS = frozenset(
    {"aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"}
)

USES_LEGEND = (
    "an arrow from A to B means: A uses B (a resource of A takes an output of B or names one "
    "of B's resources, as alarms do; a rule or policy that opens B to A's security group or "
    "role counts as A using B)"
)


def component_uses(plan: Plan) -> set[tuple[str, str]]:
    """(user, used) pairs of component URNs: ``USES_LEGEND`` says what counts as a use.

    The plain dependency between two resources does not say it alone: a component that lets a
    client in (the database's ingress rule from the Batch jobs' security group, its connect
    policy on their role) depends on the client, while the client is the one that uses it.
    Security-group rules are therefore read by their own group and the peer group (an ingress
    rule: the peer uses the group's owner; an egress rule: the owner uses the peer), and role
    policies by the role they are attached to (the role's owner uses what they open)."""
    owner: dict[str, str] = {}
    for r in plan.resources:
        comp = r if not r.custom else plan.component_of(r)
        if comp is not None:
            owner[r.urn] = comp.urn
    mocks = PlanMocks(plan.config.region)
    group_by_id = {
        mocks.resource_id(r.type, r.name, r.inputs): r.urn
        for r in plan.resources
        if r.type == SECURITY_GROUP
    }
    prefix = Names(plan.stack).prefix
    named: dict[str, set[str]] = {}
    for r in plan.resources:
        for key in NAME_KEYS:
            value = r.inputs.get(key)
            if r.custom and isinstance(value, str) and value.startswith(prefix):
                named.setdefault(value, set()).add(r.urn)
    index = plan.by_urn()
    uses: set[tuple[str, str]] = set()

    def use(user: str | None, used: str | None) -> None:
        if user and used and user != used and not _is_ancestor(plan, used, user):
            uses.add((user, used))

    for r in plan.resources:
        here = owner.get(r.urn)
        if r.type in (INGRESS_RULE, EGRESS_RULE):
            group = owner.get(group_by_id.get(str(r.inputs.get("securityGroupId")), ""))
            peer = owner.get(group_by_id.get(str(r.inputs.get("referencedSecurityGroupId")), ""))
            if r.type == INGRESS_RULE:
                use(peer, group)
            else:
                use(group, peer)
            continue
        roles = [d for d in r.dependencies if d in index and index[d].type == ROLE]
        if r.type in ROLE_GRANTS and roles:
            for role in roles:
                user = owner.get(role)
                use(user, here)
                for dep in r.dependencies:
                    use(user, owner.get(dep))
            continue
        for dep in r.dependencies:
            use(here, owner.get(dep))
        for key, value in r.inputs.items():
            if key in NAME_KEYS:
                continue  # its own name
            for leaf in _leaves(value):
                for named_urn in named.get(leaf, ()) if isinstance(leaf, str) else ():
                    use(here, owner.get(named_urn))
    return uses


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for inner in value.values():
            yield from _leaves(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _leaves(inner)
    else:
        yield value


def mermaid(plan: Plan) -> str:
    """A Mermaid flowchart: one node per component with the resources it holds, and an arrow
    ``A --> B`` where A uses B (``component_uses``); the legend is the chart's first comment."""
    components = plan.components()
    ids = {c.urn: f"c{i}" for i, c in enumerate(components)}
    counts = dict.fromkeys(ids, 0)
    for r in plan.custom_resources():
        comp = plan.component_of(r)
        if comp is not None:
            counts[comp.urn] += 1
    lines = [
        "flowchart LR",
        f"  %% {USES_LEGEND}",
        f"  %% stack {plan.stack}, phase {plan.phase}: {len(components)} components, "
        f"{_count(len(plan.custom_resources()), 'resource')} (the provider included)",
    ]
    for c in components:
        kind = c.type.split(":")[-1]
        lines.append(f'  {ids[c.urn]}["{c.name}<br/>{kind} ({_count(counts[c.urn], "resource")})"]')
    for user, used in sorted(component_uses(plan), key=lambda e: (ids[e[0]], ids[e[1]])):
        lines.append(f"  {ids[user]} --> {ids[used]}")
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _is_ancestor(plan: Plan, maybe_ancestor: str, urn: str) -> bool:
    index = plan.by_urn()
    current = index.get(urn)
    while current is not None and current.parent:
        if current.parent == maybe_ancestor:
            return True
        current = index.get(current.parent)
    return False


def group_counts(plan: Plan) -> list[tuple[str, str, dict[str, int]]]:
    """(component name, component type, {resource type: count}) for the readable table."""
    rows: list[tuple[str, str, dict[str, int]]] = []
    seen: dict[str, dict[str, int]] = {}
    for r in plan.resources:
        if not r.custom:
            continue
        comp = plan.component_of(r)
        key = comp.urn if comp else "(stack)"
        seen.setdefault(key, {})
        seen[key][r.type] = seen[key].get(r.type, 0) + 1
    index = plan.by_urn()
    for key, counts in seen.items():
        comp = index.get(key)
        rows.append(
            (
                comp.name if comp else "(stack)",
                comp.type if comp else "",
                dict(sorted(counts.items())),
            )
        )
    return rows


def iter_policy_documents(plan: Plan) -> Iterable[tuple[PlannedResource, str, dict[str, Any]]]:
    """Every IAM policy document in the plan: (resource, input key, parsed document)."""
    for r in plan.resources:
        for key, value in r.inputs.items():
            if (
                key in ("policy", "assumeRolePolicy", "accessPolicy")
                and isinstance(value, str)
                and value.strip()
            ):
                try:
                    document = json.loads(value)
                except json.JSONDecodeError:
                    continue
                if isinstance(document, dict) and "Statement" in document:
                    yield r, key, document
        if r.type == "aws:iam/role:Role":
            for inline in r.inputs.get("inlinePolicies") or []:
                text = inline.get("policy") if isinstance(inline, Mapping) else None
                if isinstance(text, str) and text.strip():
                    yield r, "inlinePolicies", json.loads(text)
