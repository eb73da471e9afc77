"""The offline plan: the real program under Pulumi's mock engine, no CLI and no cloud.

``run_plan`` evaluates ``infra.stack.build`` with a stack's ``Pulumi.<stack>.yaml`` config and
records every ``RegisterResource`` request the program makes: type, name, parent, inputs under
their wire (camelCase) names, protect / retainOnDelete flags and dependencies, with URNs built by
the engine's rule. The operator commands, the policy tests and the unit tests all use this one
harness.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra import config as config_module
from infra.config import PlanError, read_stack_config
from infra.mocks import PlanMocks
from jobstream.contract.names import PROJECT

STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    inputs: Mapping[str, Any]
    protect: bool
    retain_on_delete: bool
    dependencies: tuple[str, ...]
    custom: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "inputs": self.inputs,
            "protect": self.protect,
            "retainOnDelete": self.retain_on_delete,
            "dependencies": list(self.dependencies),
        }


@dataclass(frozen=True)
class Plan:
    stack: str
    phase: int
    config: config_module.StackConfig
    resources: tuple[PlannedResource, ...]
    outputs: Mapping[str, Any]
    stack_urn: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "phase": self.phase,
            "resources": [r.to_json() for r in self.resources],
            "outputs": self.outputs,
        }

    @cached_property
    def _index(self) -> Mapping[str, PlannedResource]:
        return MappingProxyType({r.urn: r for r in self.resources})

    def by_urn(self) -> Mapping[str, PlannedResource]:
        """Resources by URN (built once per plan: parent walks look it up per resource)."""
        return self._index

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> PlannedResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise LookupError(
                f"expected one {type_} named {name!r}, found {len(found)} among {names}"
            )
        return found[0]

    def components(self) -> list[PlannedResource]:
        return [r for r in self.resources if not r.custom]

    def component_of(self, resource: PlannedResource) -> PlannedResource | None:
        """The nearest component (non-custom resource) above this one."""
        index = self.by_urn()
        parent = index.get(resource.parent or "")
        while parent is not None and parent.custom:
            parent = index.get(parent.parent or "")
        return parent


# ---- the recording monitor -------------------------------------------------------------------


def engine_urn(stack: str, project: str, parent_urn: str, type_: str, name: str) -> str:
    """Build a URN the way the engine does (``sdk/go/common/resource/urn/urn.go``): a child's
    type is its parent's full type chain, ``$``, its own type; the stack adds no prefix."""
    qualified = type_
    if parent_urn:
        parent_chain = parent_urn.split("::")[2]
        if parent_chain != STACK_TYPE:
            qualified = f"{parent_chain}${type_}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.records: list[PlannedResource] = []
        self.stack_urn = ""

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(pulumi.get_stack(), pulumi.get_project(), parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == STACK_TYPE:
            self.stack_urn = urn
            return response
        inputs = rpc.deserialize_properties(request.object)
        self.records.append(
            PlannedResource(
                urn=urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                inputs=_plain(inputs),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                dependencies=tuple(sorted(set(request.dependencies))),
                custom=bool(request.custom),
            )
        )
        return response


def _plain(value: Any) -> Any:
    """Inputs as JSON-ready values: resources become their URN text, secrets stay marked."""
    if isinstance(value, Mapping):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:  # pyright: ignore[reportPrivateUsage]
            return {"secret": True}
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.Resource):
        return f"<resource {type(value).__name__}>"
    return value


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# ---- running the program ---------------------------------------------------------------------


def run_plan(
    stack: str,
    *,
    phase: int | None = None,
    overrides: Mapping[str, str] | None = None,
    directory: Path | None = None,
) -> Plan:
    """Evaluate the program for ``stack`` (optionally at another ``phase``) under mocks."""
    raw = read_stack_config(stack, directory)
    if phase is not None:
        raw[f"{config_module.NAMESPACE}:phase"] = str(phase)
    raw.update(overrides or {})
    cfg = config_module.parse(raw, stack=stack, project=PROJECT)

    from infra.stack import build  # the program itself; imported here to keep startup light

    settings.reset_options(project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(raw)
    mocks = PlanMocks(cfg.region)
    monitor = RecordingMonitor(mocks)
    errors = _ErrorLog()
    logger = logging.getLogger(f"jobstream.plan.{stack}")
    logger.propagate = False
    logger.handlers = [errors]
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor, logger=logger
    )

    _sync_await(run_pulumi_func(lambda: build(cfg)))
    if errors.messages:
        raise PlanError("the program reported errors:\n" + "\n".join(errors.messages))
    root = settings.get_root_resource()
    outputs = _resolve_outputs(root.outputs if root is not None else {})  # pyright: ignore[reportAttributeAccessIssue]
    return Plan(
        stack=stack,
        phase=cfg.phase,
        config=cfg,
        resources=tuple(sorted(monitor.records, key=lambda r: r.urn)),
        outputs=outputs,
        stack_urn=monitor.stack_urn,
    )


def _resolve_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in outputs.items():
        resolved[key] = _plain(_sync_await(pulumi.Output.from_input(value).future()))
    return resolved


# ---- comparing two plans ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    urn: str
    type: str
    keys: Mapping[str, tuple[Any, Any]]


@dataclass(frozen=True)
class PlanDiff:
    from_phase: int
    to_phase: int
    added: tuple[PlannedResource, ...]
    removed: tuple[PlannedResource, ...]
    changed: tuple[Change, ...]
    unchanged: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "fromPhase": self.from_phase,
            "toPhase": self.to_phase,
            "added": [{"urn": r.urn, "type": r.type} for r in self.added],
            "removed": [{"urn": r.urn, "type": r.type, "protect": r.protect} for r in self.removed],
            "changed": [
                {
                    "urn": c.urn,
                    "type": c.type,
                    "keys": {k: {"old": o, "new": n} for k, (o, n) in c.keys.items()},
                }
                for c in self.changed
            ],
            "unchanged": self.unchanged,
        }


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    before, after = old.by_urn(), new.by_urn()
    added = tuple(r for u, r in after.items() if u not in before)
    removed = tuple(r for u, r in before.items() if u not in after)
    changed: list[Change] = []
    unchanged = 0
    for urn in before.keys() & after.keys():
        keys = _changed_keys(before[urn], after[urn])
        if keys:
            changed.append(Change(urn, after[urn].type, keys))
        else:
            unchanged += 1
    changed.sort(key=lambda c: c.urn)
    return PlanDiff(old.phase, new.phase, added, removed, tuple(changed), unchanged)


def _changed_keys(a: PlannedResource, b: PlannedResource) -> dict[str, tuple[Any, Any]]:
    keys: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a.inputs) | set(b.inputs)):
        old, new = a.inputs.get(key), b.inputs.get(key)
        if old != new:
            keys[key] = (old, new)
    for flag, old, new in (
        ("(protect)", a.protect, b.protect),
        ("(retainOnDelete)", a.retain_on_delete, b.retain_on_delete),
    ):
        if old != new:
            keys[flag] = (old, new)
    return keys


# ---- a diagram -----------------------------------------------------------------------------


def mermaid(plan: Plan) -> str:
    """A Mermaid flowchart: one node per component, an edge where a resource in one component
    depends on a resource in another (``A --> B``: A uses B)."""
    components = plan.components()
    ids = {c.urn: f"c{i}" for i, c in enumerate(components)}
    owner: dict[str, str] = {}
    for r in plan.resources:
        comp = r if not r.custom else plan.component_of(r)
        if comp is not None:
            owner[r.urn] = comp.urn
    edges: set[tuple[str, str]] = set()
    for r in plan.resources:
        source = owner.get(r.urn)
        for dep in r.dependencies:
            target = owner.get(dep)
            if source and target and source != target and not _is_ancestor(plan, target, source):
                edges.add((source, target))
    lines = ["flowchart LR", f"  %% stack {plan.stack}, phase {plan.phase}"]
    for c in components:
        kind = c.type.split(":")[-1]
        count = sum(1 for r in plan.resources if owner.get(r.urn) == c.urn and r.custom)
        lines.append(f'  {ids[c.urn]}["{c.name}<br/>{kind} ({count} resources)"]')
    for source, target in sorted(edges, key=lambda e: (ids[e[0]], ids[e[1]])):
        lines.append(f"  {ids[source]} --> {ids[target]}")
    return "\n".join(lines) + "\n"


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


@dataclass
class PlanSet:
    """Plans for several (stack, phase) pairs, computed once and shared by tests."""

    plans: dict[tuple[str, int], Plan] = field(default_factory=dict)

    def get(self, stack: str, phase: int, overrides: Mapping[str, str] | None = None) -> Plan:
        key = (stack, phase)
        if overrides:
            return run_plan(stack, phase=phase, overrides=overrides)
        if key not in self.plans:
            self.plans[key] = run_plan(stack, phase=phase, overrides=_cleanup_ok(phase))
        return self.plans[key]


def _cleanup_ok(phase: int) -> dict[str, str]:
    from jobstream.contract.phases import CLEANUP_PHASE

    return {f"{config_module.NAMESPACE}:confirmCleanup": "true"} if phase == CLEANUP_PHASE else {}
