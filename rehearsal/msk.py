"""A local stand-in for what MSK publishes about the consumer group: ``AWS/Kafka SumOffsetLag``
{Cluster Name, Consumer Group, Topic}, into the local CloudWatch, so that the preflight gates read
the lag the way they read it from MSK.

The Tansu broker reports wrong high watermarks (FACTS.md), so the end offsets come from a reader
of its own that follows the topic from the beginning (no group, nothing committed); the group's
committed offsets come from the broker (consumer-group admin calls work on Tansu), read in a
child process (group_offsets.py: librdkafka's admin client can abort its process when the
rehearsal cuts the broker's connections). MSK emits the
metric once a minute; this samples every few seconds, which only makes the gates' view sharper.
"""

from __future__ import annotations

import threading
from typing import Any

from rehearsal.group_offsets import GroupOffsetsReader


class LagPublisher:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        partitions: int,
        group: str,
        cluster_name: str,
        cloudwatch: Any,
        interval: float = 5.0,
    ) -> None:
        self._bootstrap, self._topic, self._partitions = bootstrap, topic, partitions
        self._group, self._cluster, self._cw = group, cluster_name, cloudwatch
        self._interval = interval
        self._end = [0] * partitions
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.last_lag: int | None = None
        self._offsets = GroupOffsetsReader(
            bootstrap=bootstrap, group=group, topic=topic, partitions=partitions
        )
        self._threads = [
            threading.Thread(target=self._follow, name="msk-end-offsets", daemon=True),
            threading.Thread(target=self._publish, name="msk-lag", daemon=True),
        ]

    def start(self) -> LagPublisher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._offsets.close()

    def _follow(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        reader = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"{self._group}-lag-reader",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        reader.assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in range(self._partitions)]
        )
        try:
            while not self._stop.is_set():
                for message in reader.consume(500, timeout=0.5):
                    if message.error() is None:
                        partition, offset = message.partition() or 0, message.offset() or 0
                        with self._lock:
                            self._end[partition] = max(self._end[partition], offset + 1)
        finally:
            reader.close()

    def lag(self) -> int | None:
        """The group's lag from its committed offsets, read with the admin API (as MSK computes
        it), never through a consumer of the group: a consumer created with the service's group
        id, even one that never subscribes, talks to the group's coordinator, and the local
        broker's group handling is fragile enough (docs/messaging.md, "Tansu quirks") not to
        add that. None when the offsets cannot be read (nothing is published then, as MSK
        publishes nothing it cannot compute)."""
        committed = self._offsets.read()
        if committed is None or len(committed) != self._partitions:
            return None
        with self._lock:
            end = list(self._end)
        return sum(max(0, end[p] - max(offset, 0)) for p, offset in committed.items())

    @property
    def readers_replaced(self) -> int:
        """Offsets-reader processes replaced: they died (librdkafka aborts), stopped answering
        or failed a read."""
        return self._offsets.children_replaced

    def _publish(self) -> None:
        while not self._stop.wait(self._interval):
            value = self.lag()
            if value is None:
                continue
            self.last_lag = value
            try:
                self._cw.put_metric_data(
                    Namespace="AWS/Kafka",
                    MetricData=[
                        {
                            "MetricName": "SumOffsetLag",
                            "Dimensions": [
                                {"Name": "Cluster Name", "Value": self._cluster},
                                {"Name": "Consumer Group", "Value": self._group},
                                {"Name": "Topic", "Value": self._topic},
                            ],
                            "Value": float(value),
                            # High resolution, so that the gates can read it in periods of
                            # seconds (MSK itself publishes per minute).
                            "StorageResolution": 1,
                        }
                    ],
                )
            except Exception:
                continue
