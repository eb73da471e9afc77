"""CloudWatch metrics of the messaging library: names (stdlib-only constants) and an emitter.

Namespace ``Jobstream``; every metric carries the ``Stack`` dimension; the table of names
and their extra dimensions is ``METRICS`` (and docs/messaging.md). The dashboard and the
operator commands import these constants, so this module must stay importable without boto3.

``CloudWatchMetrics`` aggregates counters in memory and sends them in batches with
``PutMetricData`` from a background thread; a CloudWatch failure is logged and counted
(``dropped_batches``), never raised into the publishing or consuming code.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

log = logging.getLogger(__name__)

NAMESPACE = "Jobstream"

DIM_STACK = "Stack"
DIM_ROUTE = "Route"
DIM_CONSUMER = "Consumer"

JOBS_PUBLISHED = "JobsPublished"
PUBLISH_ERRORS = "PublishErrors"
SECONDARY_PUBLISH_FAILURES = "SecondaryPublishFailures"
SECONDARY_PUBLISH_REPAIRED = "SecondaryPublishRepaired"
JOBS_APPLIED = "JobsApplied"
DUPLICATES_SKIPPED = "DuplicatesSkipped"
PROCESSING_TIME = "ProcessingTime"
PROCESSING_ERRORS = "ProcessingErrors"
DEAD_LETTERED = "DeadLettered"
VERIFY_MATCHES = "VerifyMatches"
VERIFY_MISMATCHES = "VerifyMismatches"

UNIT_COUNT = "Count"
UNIT_MILLISECONDS = "Milliseconds"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    dimensions: tuple[str, ...]
    """Dimensions besides ``Stack``."""
    description: str


METRICS: Mapping[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(JOBS_PUBLISHED, UNIT_COUNT, (DIM_ROUTE,), "jobs accepted by a route"),
        MetricSpec(PUBLISH_ERRORS, UNIT_COUNT, (DIM_ROUTE,), "publishes that failed on a route"),
        MetricSpec(
            SECONDARY_PUBLISH_FAILURES,
            UNIT_COUNT,
            (DIM_ROUTE,),
            "dual-write secondary writes that failed after retries (recorded for repair)",
        ),
        MetricSpec(
            SECONDARY_PUBLISH_REPAIRED,
            UNIT_COUNT,
            (DIM_ROUTE,),
            "repair-log entries re-published successfully by RepairLog.replay",
        ),
        MetricSpec(JOBS_APPLIED, UNIT_COUNT, (DIM_CONSUMER,), "job results applied"),
        MetricSpec(
            DUPLICATES_SKIPPED, UNIT_COUNT, (DIM_CONSUMER,), "deliveries the ledger suppressed"
        ),
        MetricSpec(PROCESSING_TIME, UNIT_MILLISECONDS, (DIM_CONSUMER,), "handler time per message"),
        MetricSpec(PROCESSING_ERRORS, UNIT_COUNT, (DIM_CONSUMER,), "handler failures"),
        MetricSpec(DEAD_LETTERED, UNIT_COUNT, (DIM_CONSUMER,), "poison messages dead-lettered"),
        MetricSpec(VERIFY_MATCHES, UNIT_COUNT, (), "verify mode: digest equals the applied one"),
        MetricSpec(
            VERIFY_MISMATCHES, UNIT_COUNT, (), "verify mode: digest differs from the applied one"
        ),
    )
}

MAX_DATUMS_PER_CALL = 500
MAX_VALUES_PER_DATUM = 150


class MetricsSink(Protocol):
    def count(self, name: str, value: float = 1, **dimensions: str) -> None: ...

    def timing(self, name: str, milliseconds: float, **dimensions: str) -> None: ...


_Series = tuple[str, tuple[tuple[str, str], ...]]
"""A metric name and its sorted (dimension, value) pairs."""


def _key(name: str, dimensions: Mapping[str, str]) -> _Series:
    spec = METRICS.get(name)
    if spec is None:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    if set(dimensions) != set(spec.dimensions):
        raise ValueError(f"{name} takes dimensions {spec.dimensions}, got {sorted(dimensions)}")
    return name, tuple(sorted(dimensions.items()))


class _Accumulator:
    """Counters summed and timings listed per series, under one lock (validated by ``_key``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[_Series, float] = defaultdict(float)
        self.timings: dict[_Series, list[float]] = defaultdict(list)

    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        key = _key(name, dimensions)
        with self._lock:
            self.counts[key] += value

    def timing(self, name: str, milliseconds: float, **dimensions: str) -> None:
        key = _key(name, dimensions)
        with self._lock:
            self.timings[key].append(milliseconds)


class InMemoryMetrics(_Accumulator):
    """Keeps totals in memory (tests, the rehearsal, and as a tee next to CloudWatch)."""

    def total(self, name: str, **dimensions: str) -> float:
        """Sum over every series of ``name`` whose dimensions include ``dimensions``."""
        with self._lock:
            return sum(
                v
                for (n, dims), v in self.counts.items()
                if n == name and set(dimensions.items()) <= set(dims)
            )


class TeeMetrics:
    def __init__(self, *sinks: MetricsSink) -> None:
        self._sinks = sinks

    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        for sink in self._sinks:
            sink.count(name, value, **dimensions)

    def timing(self, name: str, milliseconds: float, **dimensions: str) -> None:
        for sink in self._sinks:
            sink.timing(name, milliseconds, **dimensions)


class CloudWatchMetrics(_Accumulator):
    """Buffers metrics and sends them with ``PutMetricData`` in batches.

    Counters are summed per (name, dimensions) between flushes; timings are sent as
    ``Values``/``Counts`` lists (``counts`` and ``timings`` hold what is buffered since the last
    flush). ``flush()`` sends now; with ``interval`` set a daemon thread flushes every
    ``interval`` seconds. ``close()`` flushes and stops the thread.
    """

    def __init__(
        self,
        cloudwatch: CloudWatchClient,
        stack: str,
        *,
        namespace: str = NAMESPACE,
        interval: float | None = 10.0,
    ) -> None:
        super().__init__()
        self._cw = cloudwatch
        self._stack = stack
        self._namespace = namespace
        self.sent_batches = 0
        self.dropped_batches = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(
                target=self._loop, args=(interval,), name="cloudwatch-metrics", daemon=True
            )
            self._thread.start()

    def _dims(self, dims: tuple[tuple[str, str], ...]) -> list[Any]:
        return [{"Name": DIM_STACK, "Value": self._stack}] + [
            {"Name": k, "Value": v} for k, v in dims
        ]

    def _take(self) -> list[Any]:
        with self._lock:
            counts, self.counts = self.counts, defaultdict(float)
            timings, self.timings = self.timings, defaultdict(list)
        data: list[Any] = []
        for (name, dims), value in counts.items():
            data.append(
                {
                    "MetricName": name,
                    "Dimensions": self._dims(dims),
                    "Value": value,
                    "Unit": METRICS[name].unit,
                }
            )
        for (name, dims), values in timings.items():
            for start in range(0, len(values), MAX_VALUES_PER_DATUM):
                chunk = values[start : start + MAX_VALUES_PER_DATUM]
                data.append(
                    {
                        "MetricName": name,
                        "Dimensions": self._dims(dims),
                        "Values": chunk,
                        "Counts": [1.0] * len(chunk),
                        "Unit": METRICS[name].unit,
                    }
                )
        return data

    def flush(self) -> None:
        data = self._take()
        for start in range(0, len(data), MAX_DATUMS_PER_CALL):
            batch = data[start : start + MAX_DATUMS_PER_CALL]
            try:
                self._cw.put_metric_data(Namespace=self._namespace, MetricData=batch)
                self.sent_batches += 1
            except Exception as exc:
                self.dropped_batches += 1
                log.warning("dropping %d metric data: PutMetricData failed: %r", len(batch), exc)

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
