"""The migration phase table of DESIGN.md, as data (standard library only).

This module is the single source of truth for which resource groups exist in a phase, in which
state, and how messages are routed. The stack, the routing document, the worker, the offline
plan, the operator commands and the tests all read it; nothing else encodes the phase table.

Adding a component to the table is one line in ``_GROUP_STATES``.

Phase 4 (cutover) keeps the whole SQS path running: producers stop writing to SQS, but the
pipe keeps submitting one Batch job per message and the Batch job queue stays enabled until the
queue is empty, so a job that reached SQS is applied by the SQS path and the cutover never
depends on dual-write having delivered every job to Kafka too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

PHASES: tuple[int, ...] = (1, 2, 3, 4, 5)
FIRST_PHASE = PHASES[0]
LAST_PHASE = PHASES[-1]
CLEANUP_PHASE = 5
"""The phase that deletes the SQS and Batch resources; it needs an explicit confirmation."""


class ResourceGroup(StrEnum):
    """A set of resources that appears, disappears or changes state together."""

    NETWORK = "network"
    DATABASE = "database"
    JOB_QUEUE = "job_queue"
    BATCH = "batch"
    SQS_TRIGGER = "sqs_trigger"
    KAFKA = "kafka"
    CONSUMER_SERVICE = "consumer_service"
    ROUTING = "routing"
    MONITORING = "monitoring"


class GroupState(StrEnum):
    """The state a resource group is in within one phase (absent groups are not listed)."""

    PRESENT = "present"
    DRAINING = "draining"
    """Kept, receives no new writes, and is emptied by its consumer (the job queue in phase 4)."""
    RUNNING = "running"
    ENABLED = "enabled"
    VERIFY = "verify"
    PRIMARY = "primary"


class Route(StrEnum):
    """A transport that producers publish to and a consumer reads from."""

    SQS = "sqs"
    KAFKA = "kafka"


class ConsumerMode(StrEnum):
    """How the consumer on a route treats the jobs it reads (DESIGN.md, processing guarantee)."""

    OFF = "off"
    VERIFY = "verify"
    """Compute the result, compare it with the applied one, apply only jobs routed here alone."""
    DRAIN = "drain"
    """Apply what still reaches this route (through the ledger); producers no longer write to it."""
    PRIMARY = "primary"


_P, _DRAINING, _RUN = GroupState.PRESENT, GroupState.DRAINING, GroupState.RUNNING
_ON = GroupState.ENABLED
_VERIFY, _PRIMARY = GroupState.VERIFY, GroupState.PRIMARY

# One row per resource group; one column per phase (1..5); None = the group does not exist.
_GROUP_STATES: Mapping[ResourceGroup, tuple[GroupState | None, ...]] = {
    #                                1      2      3        4         5
    ResourceGroup.NETWORK:          (_P,    _P,    _P,      _P,       _P),
    ResourceGroup.DATABASE:         (_P,    _P,    _P,      _P,       _P),
    ResourceGroup.JOB_QUEUE:        (_P,    _P,    _P,      _DRAINING, None),
    ResourceGroup.SQS_TRIGGER:      (_RUN,  _RUN,  _RUN,    _RUN,     None),
    ResourceGroup.BATCH:            (_ON,   _ON,   _ON,     _ON,      None),
    ResourceGroup.KAFKA:            (None,  _P,    _P,      _P,       _P),
    ResourceGroup.CONSUMER_SERVICE: (None,  None,  _VERIFY, _PRIMARY, _PRIMARY),
    ResourceGroup.ROUTING:          (_P,    _P,    _P,      _P,       _P),
    ResourceGroup.MONITORING:       (_P,    _P,    _P,      _P,       _P),
}  # fmt: skip

_S, _K = Route.SQS, Route.KAFKA
# Where producers publish in each phase; the first route is the primary (its failure fails
# the publish), any further route is a secondary (dual-write).
_PUBLISH_TARGETS: tuple[tuple[Route, ...], ...] = ((_S,), (_S, _K), (_S, _K), (_K,), (_K,))

_M_OFF, _M_VERIFY, _M_PRIMARY = ConsumerMode.OFF, ConsumerMode.VERIFY, ConsumerMode.PRIMARY
_M_DRAIN = ConsumerMode.DRAIN
_CONSUMER_MODES: Mapping[Route, tuple[ConsumerMode, ...]] = {
    #            1           2           3           4           5
    Route.SQS:   (_M_PRIMARY, _M_PRIMARY, _M_PRIMARY, _M_DRAIN,   _M_OFF),
    Route.KAFKA: (_M_OFF,     _M_OFF,     _M_VERIFY,  _M_PRIMARY, _M_PRIMARY),
}  # fmt: skip

_TITLES: tuple[str, ...] = ("SQS", "dual-write", "consumer migration", "cutover", "cleanup")


@dataclass(frozen=True)
class Phase:
    """Everything one phase decides: resource groups, their states, and the routing."""

    number: int
    title: str
    groups: Mapping[ResourceGroup, GroupState]
    publish_targets: tuple[Route, ...]
    consumer_modes: Mapping[Route, ConsumerMode]

    def has(self, group: ResourceGroup) -> bool:
        return group in self.groups

    def state(self, group: ResourceGroup) -> GroupState | None:
        return self.groups.get(group)

    @property
    def primary_route(self) -> Route:
        return self.publish_targets[0]

    @property
    def primary_consumer(self) -> Route:
        (route,) = (r for r, m in self.consumer_modes.items() if m is ConsumerMode.PRIMARY)
        return route

    @property
    def label(self) -> str:
        return f"{self.number} ({self.title})"


class UnknownPhaseError(ValueError):
    """Raised for a phase number outside the table."""


def phase(number: int) -> Phase:
    """The phase with this number; raises ``UnknownPhaseError`` outside 1..5."""
    if number not in PHASES:
        allowed = ", ".join(str(p) for p in PHASES)
        raise UnknownPhaseError(f"phase {number!r} does not exist; phases are {allowed}")
    index = number - FIRST_PHASE
    groups = {g: states[index] for g, states in _GROUP_STATES.items()}
    return Phase(
        number=number,
        title=_TITLES[index],
        groups=MappingProxyType({g: s for g, s in groups.items() if s is not None}),
        publish_targets=_PUBLISH_TARGETS[index],
        consumer_modes=MappingProxyType({r: m[index] for r, m in _CONSUMER_MODES.items()}),
    )


def all_phases() -> tuple[Phase, ...]:
    return tuple(phase(n) for n in PHASES)


def adjacent_changes() -> tuple[tuple[int, int], ...]:
    """Every supported phase change: one step up or one step down (the rollback path)."""
    up = tuple((a, a + 1) for a in PHASES[:-1])
    down = tuple((b, a) for a, b in up if b != CLEANUP_PHASE)
    return up + down
