"""Metric emitters of the runtime: CloudWatch, in memory, and a tee.

The names, units and dimensions are the contract's (``jobstream.contract.metrics``); an emitter
refuses a name or a set of dimensions that the contract does not declare.

``CloudWatchMetrics`` aggregates counters in memory and sends them in batches with
``PutMetricData`` from a background thread; a CloudWatch failure is logged and counted
(``dropped_batches``), never raised into the publishing or consuming code.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from jobstream.contract.metrics import DIM_STACK, METRICS, NAMESPACE

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

log = logging.getLogger(__name__)

MAX_DATUMS_PER_CALL = 500
MAX_VALUES_PER_DATUM = 150


class MetricsSink(Protocol):
    def count(self, name: str, value: float = 1, **dimensions: str) -> None: ...

    def timing(self, name: str, milliseconds: float, **dimensions: str) -> None: ...


class _NullMetrics:
    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        pass

    def timing(self, name: str, milliseconds: float, **dimensions: str) -> None:
        pass


NULL_METRICS: MetricsSink = _NullMetrics()
"""A sink that drops everything (the default where no metrics are wanted)."""


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
