"""Reading the routing document: ``RoutingReader`` (SSM, cached with a short TTL) and
``StaticRouting`` (tests, and services configured without SSM).

The document itself (``Routing``) is defined in ``jobstream.contract.routing``.

A service that cannot refresh its copy keeps the last good document (a transient SSM error must
not stop the services) but says so: once the copy is older than ``stale_after`` (a few TTLs) each
failed refresh logs one warning line and counts ``RoutingStale`` (an alarm in the stack fires on
it), so a phase change that a service has not seen is never silent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from jobstream.contract import metrics as m
from jobstream.contract.routing import Routing

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

    from jobstream.messaging.metrics import MetricsSink

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 15.0
STALE_AFTER_TTLS = 4
"""A copy older than this many TTLs is stale: reported on every failed refresh."""


class RoutingSource(Protocol):
    def get(self) -> Routing: ...


class RoutingReader:
    """Reads the routing parameter from SSM and caches it for ``ttl`` seconds.

    If a refresh fails after a document was read once, the last good document is kept and the
    refresh is retried after another TTL. The first read raises. ``age()`` is the age of the copy
    in hand; ``stale`` says whether it is older than ``stale_after``.
    """

    def __init__(
        self,
        ssm: SSMClient,
        parameter_name: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        stale_after: float | None = None,
        metrics: MetricsSink | None = None,
        component: str = "service",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssm = ssm
        self._name = parameter_name
        self._ttl = ttl
        self._stale_after = stale_after if stale_after is not None else STALE_AFTER_TTLS * ttl
        self._metrics = metrics
        self._component = component
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Routing | None = None
        self._fetched_at = 0.0
        self._good_at = 0.0
        self.fetches = 0
        self.failed_refreshes = 0
        self.stale_reports = 0

    @property
    def parameter_name(self) -> str:
        return self._name

    def invalidate(self) -> None:
        with self._lock:
            self._fetched_at = float("-inf")

    def age(self) -> float:
        """Seconds since the copy in hand was read successfully (inf before the first read)."""
        with self._lock:
            return float("inf") if self._cached is None else self._clock() - self._good_at

    @property
    def stale(self) -> bool:
        return self.age() > self._stale_after

    def get(self) -> Routing:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._fetched_at < self._ttl:
                return self._cached
            try:
                value = self._ssm.get_parameter(Name=self._name)["Parameter"].get("Value", "")
                self.fetches += 1
                self._cached = Routing.from_json(value)
                self._good_at = now
            except Exception as exc:
                if self._cached is None:
                    raise
                self.failed_refreshes += 1
                self._report_if_stale(now, exc)
            self._fetched_at = now
            return self._cached

    def _report_if_stale(self, now: float, exc: Exception) -> None:
        age = now - self._good_at
        if age <= self._stale_after:
            return
        self.stale_reports += 1
        log.warning(
            "%s: routing document %s is stale: last read %.0f s ago (phase %s), refresh failed: %r",
            self._component,
            self._name,
            age,
            self._cached.phase if self._cached else "?",
            exc,
        )
        if self._metrics is not None:
            self._metrics.count(m.ROUTING_STALE)


class StaticRouting:
    """A fixed routing (tests, and services configured without SSM)."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing

    def get(self) -> Routing:
        return self.routing
