"""The routing contract between the infrastructure and the services.

The stack writes one SSM String parameter per stack, ``/jobstream/<stack>/routing``, whose
value is the JSON document parsed here (``Routing.from_json``). Producers and consumers read
it through ``RoutingReader`` (cached with a short TTL) so that a phase change takes effect
without a redeploy. This module imports only the standard library at import time: the
infrastructure code imports it to build the parameter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

ROUTING_VERSION = 1
ROUTES: tuple[str, ...] = ("sqs", "kafka")
CONSUMER_MODES: tuple[str, ...] = ("off", "verify", "primary")
KAFKA_AUTH_IAM = "iam"
KAFKA_AUTH_MODES: tuple[str, ...] = (KAFKA_AUTH_IAM, "none")
DEFAULT_TTL_SECONDS = 15.0

RouteName = Literal["sqs", "kafka"]
ModeName = Literal["off", "verify", "primary"]

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
    """The SSM parameter name of a stack's routing document (``infra.naming`` uses it too)."""
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
        return self.consumer_modes.get(consumer, "off")

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


class RoutingReader:
    """Reads the routing parameter from SSM and caches it for ``ttl`` seconds.

    If a refresh fails after a document was read once, the last good document is kept
    (and the refresh retried after another TTL): a transient SSM error must not stop the
    services. The first read raises.
    """

    def __init__(
        self,
        ssm: SSMClient,
        parameter_name: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssm = ssm
        self._name = parameter_name
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Routing | None = None
        self._fetched_at = 0.0
        self.fetches = 0

    @property
    def parameter_name(self) -> str:
        return self._name

    def invalidate(self) -> None:
        with self._lock:
            self._fetched_at = float("-inf")

    def get(self) -> Routing:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._fetched_at < self._ttl:
                return self._cached
            try:
                value = self._ssm.get_parameter(Name=self._name)["Parameter"].get("Value", "")
                self.fetches += 1
                self._cached = Routing.from_json(value)
            except Exception:
                if self._cached is None:
                    raise
            self._fetched_at = now
            return self._cached


class StaticRouting:
    """A fixed routing (tests, and services configured without SSM)."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing

    def get(self) -> Routing:
        return self.routing
