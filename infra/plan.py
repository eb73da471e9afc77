"""The offline plan: the real program under Pulumi's mock engine, no CLI and no cloud.

``run_plan`` evaluates ``infra.stack.build`` with a stack's ``Pulumi.<stack>.yaml`` config and
records every ``RegisterResource`` request the program makes: type, name, parent, inputs under
their wire (camelCase) names, protect / retainOnDelete flags and dependencies, with URNs built by
the engine's rule. The operator commands, the policy tests and the unit tests all use this one
harness.
"""

from __future__ import annotations

import asyncio
import difflib
import gc
import json
import logging
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
from infra.config import PlanError, available_stacks, project_dir, read_stack_config
from infra.mocks import PlanMocks
from infra.replacement import Replacement, replacement
from jobstream.contract.names import PROJECT, Names
from jobstream.contract.phases import CLEANUP_PHASE, PHASES

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
    import_id: str | None = None
    """The physical id the resource is imported (adopted) from, or None: created."""

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
            "importId": self.import_id,
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

    def custom_resources(self) -> list[PlannedResource]:
        """What a deployment creates (the cloud resources and the provider): the resources that
        every count of the plan counts. Components are logical groups and counted apart."""
        return [r for r in self.resources if r.custom]

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
                import_id=request.importId or None,
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
    source = f"Pulumi.{stack}.yaml" + (" with --set overrides" if overrides else "")
    cfg = config_module.parse(raw, stack=stack, project=PROJECT, source=source)

    from infra.stack import build  # the program itself; imported here to keep startup light

    with _collector_paused():
        _sync_await(_one_monitor_thread())
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


_ONE_THREAD_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


async def _one_monitor_thread() -> None:
    """Serve the mock engine's calls from one thread. Pulumi hands every RegisterResource and
    invoke to the event loop's default executor (a pool of cpu + 4 threads); under mocks each
    call returns at once and none waits for another, so one thread serves them in order, and
    without the threads contending for the interpreter lock (measured: a plan after the first
    0.25 -> 0.20 s)."""
    loop = asyncio.get_running_loop()
    if loop not in _ONE_THREAD_LOOPS:
        loop.set_default_executor(ThreadPoolExecutor(1, thread_name_prefix="plan-monitor"))
        _ONE_THREAD_LOOPS.add(loop)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Run one evaluation with the cyclic garbage collector paused, then collect once.

    An evaluation allocates ~100k short-lived objects (outputs, futures, tasks); with the
    collector on, their allocation triggers collections that also traverse the long-lived
    objects of the process (~500k after the first plan, most of them pulumi_aws's classes,
    which load during the first evaluation). Measured on 2 cores: a plan after the first took
    0.67 s with the collector on and 0.37 s paused. One young-generation collection afterwards
    frees the cycles the evaluation left (the program's resources reference each other).
    Where the collector is off already (the ``jobstream`` command), it stays off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            gc.collect(0)


@dataclass(frozen=True)
class PlanRequest:
    """One plan to evaluate: a stack at a phase (``None``: the stack's own) with overrides."""

    stack: str
    phase: int | None = None
    overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def label(self) -> str:
        return f"{self.stack} phase {self.phase}" if self.phase is not None else self.stack


def cleanup_confirmed(phase: int | None) -> dict[str, str]:
    """The override that lets phase 5 evaluate (``confirmCleanup``), for the callers that plan
    every phase of a stack; nothing for the other phases."""
    return {f"{config_module.NAMESPACE}:confirmCleanup": "true"} if phase == CLEANUP_PHASE else {}


def every_plan(
    stacks: Sequence[str] | None = None, phases: Sequence[int] = PHASES
) -> list[PlanRequest]:
    """Every stack (default: each ``Pulumi.<stack>.yaml``) at every phase, phase 5 with
    ``confirmCleanup`` (``cleanup_confirmed``)."""
    names = list(stacks) if stacks is not None else available_stacks(project_dir())
    return [PlanRequest(s, n, cleanup_confirmed(n)) for s in names for n in phases]


def run_plans(
    requests: Sequence[PlanRequest],
    *,
    started: Callable[[PlanRequest], None] | None = None,
    finished: Callable[[PlanRequest, Plan], None] | None = None,
) -> list[Plan]:
    """Evaluate several plans in this process, in order. The program, Pulumi and the
    pulumi_aws modules are imported once, by the first; each one after costs the evaluation
    only (see ``benchmarks/bench_cli.py``). ``started`` and ``finished`` report progress."""
    plans: list[Plan] = []
    for request in requests:
        if started is not None:
            started(request)
        plan = run_plan(request.stack, phase=request.phase, overrides=request.overrides)
        if finished is not None:
            finished(request, plan)
        plans.append(plan)
    return plans


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
    replacement: Replacement | None = None
    """Set when the change replaces a stateful resource (infra/replacement.py): a blocker."""
    custom: bool = True
    """False for a component (only its flags can change)."""

    def value_changes(self, key: str) -> list[ValueChange]:
        """What changed inside the value of ``key`` (see ``value_changes``)."""
        old, new = self.keys[key]
        return value_changes(old, new)


_ABSENT: Any = object()


@dataclass(frozen=True)
class ValueChange:
    """One changed leaf of an input: its ``path`` (``""`` for the whole value, else like
    ``consumer_modes.kafka`` or ``Statement[1].Action``) and the values before and after;
    ``absent`` on a side where the path does not exist."""

    path: str
    old: Any = _ABSENT
    new: Any = _ABSENT

    @property
    def added(self) -> bool:
        return self.old is _ABSENT

    @property
    def removed(self) -> bool:
        return self.new is _ABSENT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if not self.added:
            out["old"] = self.old
        if not self.removed:
            out["new"] = self.new
        return out


def is_structured(value: Any) -> bool:
    """A mapping, a list, or a string that holds a JSON object or array (a policy document, the
    routing document, a dashboard body)."""
    return isinstance(value, Mapping | list) or _json_document(value) is not None


def _json_document(value: Any) -> dict[str, Any] | list[Any] | None:
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return None
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict | list) else None


def value_changes(old: Any, new: Any, path: str = "") -> list[ValueChange]:
    """The leaves that differ between two input values, in order: mappings by key, lists by
    position (the longer list's extra items added or removed whole), JSON text parsed first, so
    a changed policy or routing document shows the keys that changed, not the whole string."""
    old_doc, new_doc = _json_document(old), _json_document(new)
    if old_doc is not None and new_doc is not None:
        old, new = old_doc, new_doc
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[ValueChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = _path(path, str(key))
            if key not in new:
                changes.append(ValueChange(sub, old=old[key]))
            elif key not in old:
                changes.append(ValueChange(sub, new=new[key]))
            else:
                changes += value_changes(old[key], new[key], sub)
        return changes
    if isinstance(old, list) and isinstance(new, list):
        return _list_changes(old, new, path)
    return [] if old == new else [ValueChange(path, old, new)]


SIMILAR = 0.6
"""How alike (difflib's ratio of their JSON) two items of a list must be to count as one item
that changed rather than one removed and another added."""


def _list_changes(old: list[Any], new: list[Any], path: str) -> list[ValueChange]:
    """Lists are aligned first: equal items anchor (difflib), so an item inserted in the middle
    shows as one item added, not as every later item changed. Between anchors, items that are
    objects or lists pair by similarity (a dashboard widget that moved, a policy statement that
    changed), other items by position; an item without a partner is added or removed whole.
    Paths give an item's position in the new list (in the old one for a removed item)."""
    a = [json.dumps(x, sort_keys=True) for x in old]
    b = [json.dumps(x, sort_keys=True) for x in new]
    changes: list[ValueChange] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        structured = all(isinstance(x, Mapping | list) for x in [*old[i1:i2], *new[j1:j2]])
        pairs = (
            _pair_by_similarity(a[i1:i2], b[j1:j2])
            if structured
            else _pair_by_position(i2 - i1, j2 - j1)
        )
        for i, j in pairs:
            if i is not None and j is not None:
                changes += value_changes(old[i1 + i], new[j1 + j], f"{path}[{j1 + j}]")
            elif i is not None:
                changes.append(ValueChange(f"{path}[{i1 + i}]", old=old[i1 + i]))
            elif j is not None:
                changes.append(ValueChange(f"{path}[{j1 + j}]", new=new[j1 + j]))
    return changes


_Pairs = list[tuple[int | None, int | None]]


def _pair_by_position(n_old: int, n_new: int) -> _Pairs:
    pairs: _Pairs = [(i, i) for i in range(min(n_old, n_new))]
    pairs += [(i, None) for i in range(n_new, n_old)]
    pairs += [(None, j) for j in range(n_old, n_new)]
    return pairs


def _pair_by_similarity(old: list[str], new: list[str]) -> _Pairs:
    """The order-keeping pairing of two lists of JSON texts with the greatest total
    similarity, pairs below ``SIMILAR`` left apart (a small dynamic programme)."""

    def similarity(x: str, y: str) -> float:
        matcher = difflib.SequenceMatcher(None, x, y, autojunk=False)
        return matcher.ratio() if matcher.quick_ratio() >= SIMILAR else 0.0

    sim = [[similarity(x, y) for y in new] for x in old]
    best = [[0.0] * (len(new) + 1) for _ in range(len(old) + 1)]
    for i in range(len(old) - 1, -1, -1):
        for j in range(len(new) - 1, -1, -1):
            paired = best[i + 1][j + 1] + sim[i][j] if sim[i][j] >= SIMILAR else -1.0
            best[i][j] = max(best[i + 1][j], best[i][j + 1], paired)
    pairs: _Pairs = []
    i = j = 0
    while i < len(old) and j < len(new):
        if sim[i][j] >= SIMILAR and best[i][j] == best[i + 1][j + 1] + sim[i][j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            pairs.append((i, None))
            i += 1
        else:
            pairs.append((None, j))
            j += 1
    pairs += [(k, None) for k in range(i, len(old))]
    pairs += [(None, k) for k in range(j, len(new))]
    return pairs


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _path(parent: str, key: str) -> str:
    if _IDENTIFIER.match(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


@dataclass(frozen=True)
class PlanDiff:
    from_phase: int
    to_phase: int
    added: tuple[PlannedResource, ...]
    removed: tuple[PlannedResource, ...]
    changed: tuple[Change, ...]
    unchanged: int = 0
    """Resources and components alike; ``counts`` tells them apart."""
    unchanged_components: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        """How many resources (custom resources, the provider included: what the plan's table
        counts) and, apart, how many components are added, removed, changed and unchanged."""

        def split(custom: bool) -> dict[str, int]:
            unchanged_components = self.unchanged_components
            return {
                "added": sum(1 for r in self.added if r.custom is custom),
                "removed": sum(1 for r in self.removed if r.custom is custom),
                "changed": sum(1 for c in self.changed if c.custom is custom),
                "unchanged": self.unchanged - unchanged_components
                if custom
                else unchanged_components,
            }

        return {"resources": split(True), "components": split(False)}

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
                    "keys": {k: _key_json(o, n) for k, (o, n) in c.keys.items()},
                    "replacement": c.replacement.to_json() if c.replacement else None,
                }
                for c in self.changed
            ],
            "unchanged": self.unchanged,
            "counts": self.counts(),
        }


def _key_json(old: Any, new: Any) -> dict[str, Any]:
    """A changed key in the diff's JSON: old and new as they are, and for a structured value
    (JSON text, a mapping, a list) the ``changes`` inside it."""
    out: dict[str, Any] = {"old": old, "new": new}
    if is_structured(old) and is_structured(new):
        out["changes"] = [c.to_json() for c in value_changes(old, new)]
    return out


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    before, after = old.by_urn(), new.by_urn()
    added = tuple(r for u, r in after.items() if u not in before)
    removed = tuple(r for u, r in before.items() if u not in after)
    changed: list[Change] = []
    unchanged = unchanged_components = 0
    for urn in before.keys() & after.keys():
        keys = _changed_keys(before[urn], after[urn])
        if keys:
            replaces = replacement(after[urn].type, before[urn].inputs, after[urn].inputs)
            changed.append(Change(urn, after[urn].type, keys, replaces, after[urn].custom))
        else:
            unchanged += 1
            unchanged_components += not after[urn].custom
    changed.sort(key=lambda c: c.urn)
    return PlanDiff(
        old.phase, new.phase, added, removed, tuple(changed), unchanged, unchanged_components
    )


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


@dataclass
class PlanSet:
    """Plans computed once and shared (by the tests): each (stack, phase), phase 5 with
    ``confirmCleanup``, and each (stack, phase, overrides) asked for. A plan is a function of
    the stack file, the phase and the overrides (two runs give identical plans), and nothing
    changes a plan once made, so one evaluation serves every caller."""

    plans: dict[tuple[str, int, tuple[tuple[str, str], ...]], Plan] = field(default_factory=dict)

    def get(self, stack: str, phase: int, overrides: Mapping[str, str] | None = None) -> Plan:
        """The plan of ``stack`` at ``phase``; with ``overrides``, those exactly (no
        ``confirmCleanup`` added: phase 5 with overrides must confirm it itself)."""
        key = (stack, phase, tuple(sorted((overrides or {}).items())))
        if key not in self.plans:
            self.plans[key] = run_plan(
                stack, phase=phase, overrides=overrides or cleanup_confirmed(phase)
            )
        return self.plans[key]
