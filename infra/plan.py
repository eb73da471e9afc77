"""The offline plan: the real program under Pulumi's mock engine, no CLI and no cloud.

``run_plan`` evaluates ``infra.stack.build`` with a stack's ``Pulumi.<stack>.yaml`` config and
records every ``RegisterResource`` request the program makes: type, name, parent, inputs under
their wire (camelCase) names, protect / retainOnDelete flags and dependencies, with URNs built by
the engine's rule. The operator commands, the policy tests and the unit tests all use this one
harness.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import pickle
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from functools import cached_property
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import pulumi
from pulumi import log as pulumi_log
from pulumi.runtime import known_types, rpc, settings
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra import config as config_module
from infra.config import PlanError, available_stacks, project_dir, read_stack_config
from infra.mocks import PlanMocks
from jobstream.contract.names import PROJECT
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
            "custom": self.custom,
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
    shared = _sharing
    if shared is None:
        return _evaluate(stack, raw, cfg)
    return shared.plan(json.dumps([stack, raw], sort_keys=True), lambda: _evaluate(stack, raw, cfg))


def _evaluate(stack: str, raw: dict[str, str], cfg: config_module.StackConfig) -> Plan:
    from infra.stack import build  # the program itself; imported here to keep startup light

    with _collector_paused(), _sdk_shortcuts():
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


@dataclass
class SharedEvaluations:
    """Plans remembered by what determines them: the stack's name and its whole config once the
    phase and the overrides are applied (the program, Pulumi and the mocks being this process's,
    and a plan a function of its inputs: ``tests/infra/test_plan.py`` evaluates twice and
    compares). For callers that ask for the same plans again and again, as the test suite does
    (measured: 127 evaluations of 68 distinct inputs in one run); ``run_plan`` inside
    ``sharing_evaluations`` evaluates each distinct input once. Config errors are raised every
    time: the config is parsed before the lookup, and a failed evaluation is not kept.

    With ``directory``, the processes of one run (pytest-xdist's workers) share their plans too:
    whichever asks for an input first evaluates it, under a lock on that input, and writes it
    there; the others wait for the lock and read it instead of evaluating it again (measured:
    64 evaluations of 46 distinct inputs over 4 workers, 10.7 s of CPU in the repeats). The
    files are pickles: ``directory`` must be private to the run, as pytest's ``tmp_path``
    is."""

    plans: dict[str, Plan] = field(default_factory=dict)
    reused: int = 0
    """Lookups answered by a plan this process already held."""
    directory: Path | None = None
    loaded: int = 0
    """Plans read from ``directory``, evaluated by another process."""

    @property
    def evaluated(self) -> int:
        """Plans this process evaluated itself."""
        return len(self.plans) - self.loaded

    def plan(self, key: str, evaluate: Callable[[], Plan]) -> Plan:
        """The plan of ``key``: held, read from ``directory``, or evaluated (and kept)."""
        held = self.plans.get(key)
        if held is not None:
            self.reused += 1
            return held
        if self.directory is None:
            plan = evaluate()
        else:
            plan = self._from_directory(self.directory, key, evaluate)
        self.plans[key] = plan
        return plan

    def _from_directory(self, directory: Path, key: str, evaluate: Callable[[], Plan]) -> Plan:
        import fcntl  # POSIX; only the test session's sharing needs it

        stem = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = directory / f"{stem}.plan.pickle"
        with (directory / f"{stem}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            stored = _read_stored(path)
            if stored is not None and stored[0] == key:
                self.loaded += 1
                return Plan(*stored[1:])
            plan = evaluate()
            fields_ = [getattr(plan, f.name) for f in dataclass_fields(Plan)]
            partial = path.with_suffix(f".{os.getpid()}.partial")
            try:
                partial.write_bytes(pickle.dumps((key, *fields_), protocol=pickle.HIGHEST_PROTOCOL))
                partial.replace(path)
            except OSError:
                partial.unlink(missing_ok=True)  # the others evaluate it themselves
            return plan


def _read_stored(path: Path) -> tuple[Any, ...] | None:
    """A stored plan's fields, or None when there is none or it cannot be read (evaluated again,
    and written over)."""
    try:
        stored = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None  # none yet (FileNotFoundError), or cut short
    return stored if isinstance(stored, tuple) and stored else None


_sharing: SharedEvaluations | None = None


@contextmanager
def sharing_evaluations(shared: SharedEvaluations | None) -> Iterator[None]:
    """Within the block, ``run_plan`` takes the plans of ``shared`` and adds the ones it
    evaluates; with ``None``, every ``run_plan`` evaluates afresh."""
    global _sharing
    before, _sharing = _sharing, shared
    try:
        yield
    finally:
        _sharing = before


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


@dataclass(frozen=True)
class _SdkShortcut:
    """A Pulumi SDK function replaced while a plan is evaluated, by one that gives the plan the
    same result for less work. If a Pulumi release renames or moves the function, the shortcut
    is skipped: plans stay the same, only slower (``tests/infra/test_plan.py`` notices)."""

    module: ModuleType
    attribute: str
    replacement: Callable[..., Any]


def _empty_stack_trace() -> source_pb2.StackTrace:
    """For ``_get_stack_trace``: the SDK walks the whole Python stack on every registration
    (``traceback.extract_stack``, a file URI per frame) to tell the engine where in the source
    each resource was declared; the mock monitor, and so the plan, never reads it. Measured in
    the test suite, whose stacks are deep: 7 % of the CPU time of the plan-evaluating tests."""
    return source_pb2.StackTrace()


def _contains_unknowns(value: Any) -> bool:
    """For ``rpc.contains_unknowns``, the same walk (an unknown anywhere in nested dicts and
    lists, each container visited once). The SDK's defines its recursive walk as a closure on
    every call, a reference cycle the garbage collector must find: 5,700-8,400 calls a plan
    (dev phase 1, prod phase 3) and ~47,000 cyclic objects, and the collection after each plan was a fifth of its time.
    Measured on 2 cores: a plan after the first 0.77-0.84x the time."""
    return _unknown_within(value, set())


def _unknown_within(value: Any, seen: set[int]) -> bool:
    if known_types.is_unknown(value):
        return True
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, dict):
        return any(_unknown_within(item, seen) for item in value.values())  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    if isinstance(value, list):
        return any(_unknown_within(item, seen) for item in value)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return False


def _drop_debug_message(
    msg: str, resource: Any = None, stream_id: int | None = None, ephemeral: bool | None = None
) -> None:
    """For ``pulumi.log.debug``: the SDK logs 650-950 debug lines a plan (dev phase 1, prod
    phase 3), each built into a log request for the mock engine, whose logger (``_ErrorLog``)
    keeps errors only. Measured on 2 cores: a plan after the first 0.95x the time."""


_SDK_SHORTCUTS = (
    _SdkShortcut(pulumi_resource, "_get_stack_trace", _empty_stack_trace),
    _SdkShortcut(rpc, "contains_unknowns", _contains_unknowns),
    _SdkShortcut(pulumi_log, "debug", _drop_debug_message),
)


@contextmanager
def _sdk_shortcuts() -> Iterator[None]:
    """Apply ``_SDK_SHORTCUTS`` for one evaluation, and put the SDK's functions back after."""
    present = [s for s in _SDK_SHORTCUTS if callable(getattr(s.module, s.attribute, None))]
    originals = [getattr(s.module, s.attribute) for s in present]
    for shortcut in present:
        setattr(shortcut.module, shortcut.attribute, shortcut.replacement)
    try:
        yield
    finally:
        for shortcut, original in zip(present, originals, strict=True):
            setattr(shortcut.module, shortcut.attribute, original)


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


@dataclass
class PlanSet:
    """Plans by (stack, phase), phase 5 with ``confirmCleanup``, and by (stack, phase,
    overrides), each evaluated once: through ``shared`` (``SharedEvaluations``), which the
    tests also share with the commands they run in-process."""

    shared: SharedEvaluations = field(default_factory=SharedEvaluations)

    def get(self, stack: str, phase: int, overrides: Mapping[str, str] | None = None) -> Plan:
        """The plan of ``stack`` at ``phase``; with ``overrides``, those exactly (no
        ``confirmCleanup`` added: phase 5 with overrides must confirm it itself)."""
        with sharing_evaluations(self.shared):
            return run_plan(stack, phase=phase, overrides=overrides or cleanup_confirmed(phase))
