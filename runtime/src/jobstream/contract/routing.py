"""The routing contract between the infrastructure and the services (standard library only).

The stack writes one SSM String parameter per stack, ``/jobstream/<stack>/routing``, whose value
is the JSON document defined here. ``routing_for_phase`` is the one function that builds it for a
phase: the routing component, the rehearsal and the tests all call it, and the ``Routing``
constructor validates it, so the stack cannot write a document the services would refuse.
Producers and consumers parse it with ``Routing.from_json`` (through
``jobstream.messaging.routing.RoutingReader``, cached with a short TTL), so a phase change takes
effect without a redeploy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

from jobstream.contract.phases import ConsumerMode, Phase, Route

ROUTING_VERSION = 1
ROUTES: tuple[str, ...] = tuple(r.value for r in Route)
CONSUMER_MODES: tuple[str, ...] = tuple(m.value for m in ConsumerMode)
APPLYING_MODES: frozenset[str] = frozenset({ConsumerMode.PRIMARY.value, ConsumerMode.DRAIN.value})
"""Modes in which a consumer applies every job it reads (through the ledger)."""
KAFKA_AUTH_IAM = "iam"
KAFKA_AUTH_NONE = "none"
KAFKA_AUTH_MODES: tuple[str, ...] = (KAFKA_AUTH_IAM, KAFKA_AUTH_NONE)

RouteName = Literal["sqs", "kafka"]
ModeName = Literal["off", "verify", "drain", "primary"]

_OPTIONAL_STRINGS = (
    "queue_url",
    "dlq_url",
    "topic",
    "dead_letter_topic",
    "bootstrap_brokers",
    "consumer_group",
)
_KEYS = (
    "version",
    "stack",
    "phase",
    "publish_targets",
    "consumer_modes",
    *_OPTIONAL_STRINGS,
    "kafka_auth",
)


class RoutingError(ValueError):
    """The routing document is not valid; the message says which key and why."""


def routing_parameter_name(stack: str) -> str:
    """The SSM parameter name of a stack's routing document."""
    return f"/jobstream/{stack}/routing"


@dataclass(frozen=True)
class Routing:
    stack: str
    phase: int
    publish_targets: tuple[str, ...]
    consumer_modes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    queue_url: str | None = None
    dlq_url: str | None = None
    topic: str | None = None
    dead_letter_topic: str | None = None
    bootstrap_brokers: str | None = None
    consumer_group: str | None = None
    kafka_auth: str | None = None
    version: int = ROUTING_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def primary_route(self) -> str:
        return self.publish_targets[0]

    @property
    def secondary_routes(self) -> tuple[str, ...]:
        return self.publish_targets[1:]

    def mode(self, consumer: str) -> str:
        """The mode of the consumer on this route (``off`` when the document omits it)."""
        return self.consumer_modes.get(consumer, ConsumerMode.OFF.value)

    def applies(self, consumer: str) -> bool:
        """True when the consumer on this route applies every job it reads (primary, drain)."""
        return self.mode(consumer) in APPLYING_MODES

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "stack": self.stack,
            "phase": self.phase,
            "publish_targets": list(self.publish_targets),
            "consumer_modes": dict(self.consumer_modes),
            "queue_url": self.queue_url,
            "dlq_url": self.dlq_url,
            "topic": self.topic,
            "dead_letter_topic": self.dead_letter_topic,
            "bootstrap_brokers": self.bootstrap_brokers,
            "consumer_group": self.consumer_group,
            "kafka_auth": self.kafka_auth,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Routing:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RoutingError(f"routing document is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise RoutingError("routing document must be a JSON object")
        return cls.from_dict(cast("dict[str, Any]", doc))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Routing:
        missing = [k for k in _KEYS if k not in doc]
        if missing:
            raise RoutingError(f"routing document lacks keys: {', '.join(missing)}")
        unknown = sorted(set(doc) - set(_KEYS))
        if unknown:
            raise RoutingError(f"routing document has unknown keys: {', '.join(unknown)}")
        if doc["version"] != ROUTING_VERSION:
            raise RoutingError(
                f"routing version {doc['version']!r} is not supported (expected {ROUTING_VERSION})"
            )
        targets = doc["publish_targets"]
        if not isinstance(targets, list):
            raise RoutingError("publish_targets must be a list")
        modes = doc["consumer_modes"]
        if not isinstance(modes, dict):
            raise RoutingError("consumer_modes must be an object")
        return cls(
            version=ROUTING_VERSION,
            stack=doc["stack"],
            phase=doc["phase"],
            publish_targets=tuple(cast("list[str]", targets)),
            consumer_modes=MappingProxyType(dict(cast("dict[str, str]", modes))),
            queue_url=doc["queue_url"],
            dlq_url=doc["dlq_url"],
            topic=doc["topic"],
            dead_letter_topic=doc["dead_letter_topic"],
            bootstrap_brokers=doc["bootstrap_brokers"],
            consumer_group=doc["consumer_group"],
            kafka_auth=doc["kafka_auth"],
        )


def routing_for_phase(
    phase: Phase,
    *,
    stack: str,
    queue_url: str | None = None,
    dlq_url: str | None = None,
    topic: str | None = None,
    dead_letter_topic: str | None = None,
    bootstrap_brokers: str | None = None,
    consumer_group: str | None = None,
    kafka_auth: str = KAFKA_AUTH_IAM,
) -> Routing:
    """The routing document of one stack in one phase: publish targets and consumer modes from
    the phase table, the places from the arguments (``None`` where the phase has no such
    resource). Raises ``RoutingError`` when the phase needs a place that was not given."""
    return Routing(
        stack=stack,
        phase=phase.number,
        publish_targets=tuple(route.value for route in phase.publish_targets),
        consumer_modes=MappingProxyType(
            {route.value: phase.consumer_modes[route].value for route in Route}
        ),
        queue_url=queue_url,
        dlq_url=dlq_url,
        topic=topic,
        dead_letter_topic=dead_letter_topic,
        bootstrap_brokers=bootstrap_brokers,
        consumer_group=consumer_group,
        kafka_auth=kafka_auth if bootstrap_brokers is not None else None,
    )


def _validate(r: Routing) -> None:
    if not isinstance(r.stack, str) or not r.stack:
        raise RoutingError("stack must be a non-empty string")
    if not isinstance(r.phase, int) or isinstance(r.phase, bool) or not 1 <= r.phase <= 5:
        raise RoutingError(f"phase must be an integer 1..5, got {r.phase!r}")
    if not r.publish_targets:
        raise RoutingError("publish_targets must name at least one route")
    for route in r.publish_targets:
        if route not in ROUTES:
            raise RoutingError(f"publish_targets: unknown route {route!r} (known: {ROUTES})")
    if len(set(r.publish_targets)) != len(r.publish_targets):
        raise RoutingError("publish_targets must not repeat a route")
    for route, mode in r.consumer_modes.items():
        if route not in ROUTES:
            raise RoutingError(f"consumer_modes: unknown route {route!r} (known: {ROUTES})")
        if mode not in CONSUMER_MODES:
            raise RoutingError(
                f"consumer_modes[{route!r}]: unknown mode {mode!r} (known: {CONSUMER_MODES})"
            )
    primaries = [route for route, mode in r.consumer_modes.items() if mode == "primary"]
    if len(primaries) != 1:
        raise RoutingError(f"exactly one consumer must be primary, found {primaries}")
    for name in _OPTIONAL_STRINGS:
        value = getattr(r, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise RoutingError(f"{name} must be a non-empty string or null")
    if r.kafka_auth is not None and r.kafka_auth not in KAFKA_AUTH_MODES:
        raise RoutingError(f"kafka_auth must be one of {KAFKA_AUTH_MODES} or null")
    needs_sqs = "sqs" in r.publish_targets or r.mode("sqs") != "off"
    needs_kafka = "kafka" in r.publish_targets or r.mode("kafka") != "off"
    if needs_sqs and r.queue_url is None:
        raise RoutingError("queue_url is required when SQS is published to or consumed")
    if needs_kafka:
        for name in ("topic", "bootstrap_brokers"):
            if getattr(r, name) is None:
                raise RoutingError(f"{name} is required when Kafka is published to or consumed")
    if r.mode("kafka") != "off" and r.consumer_group is None:
        raise RoutingError("consumer_group is required when the Kafka consumer is on")
