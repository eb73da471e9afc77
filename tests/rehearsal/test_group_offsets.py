"""The lag stand-in's offsets reader: the group's committed offsets from the broker's admin API,
in a child process that may die (librdkafka 2.16 aborts an admin client's process when a
coordinator call meets a cut connection, confluentinc/librdkafka#5397) without taking the
rehearsal with it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from rehearsal.group_offsets import GroupOffsetsReader
from rehearsal.servers import TansuBroker, TcpProxy
from tests.runtime.messaging.conftest import create_topics

pytestmark = pytest.mark.kafka


COMMITTED = {0: 5, 1: 3}


def commit_offsets(bootstrap: str, topic: str, group: str) -> None:
    """``topic`` with two partitions, and ``group`` having committed ``COMMITTED`` on them."""
    create_topics(bootstrap, topic, partitions=2)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = [TopicPartition(topic, p, o) for p, o in COMMITTED.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


@pytest.fixture
def committed(kafka_broker: TansuBroker) -> tuple[str, str]:
    topic, group = f"offsets-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    commit_offsets(kafka_broker.bootstrap, topic, group)
    return topic, group


@pytest.fixture
def reader(kafka_broker: TansuBroker, committed: tuple[str, str]) -> Iterator[GroupOffsetsReader]:
    topic, group = committed
    reader = GroupOffsetsReader(
        bootstrap=kafka_broker.bootstrap, group=group, topic=topic, partitions=2
    )
    yield reader
    reader.close()


def test_the_reader_gives_the_offsets_the_group_committed(reader: GroupOffsetsReader) -> None:
    assert reader.read() == COMMITTED
    assert reader.children_replaced == 0


def test_a_reader_process_that_dies_is_replaced_at_the_next_read(
    reader: GroupOffsetsReader,
) -> None:
    assert reader.read() == COMMITTED
    child = reader._child  # pyright: ignore[reportPrivateUsage]
    assert child is not None
    child.kill()  # what librdkafka's abort does to it
    child.wait(5)
    assert reader.read() == COMMITTED, "the next read must start a new child"
    assert reader.children_replaced == 1


def test_the_reader_reads_again_once_a_cut_connection_is_back() -> None:
    """An admin client whose connections were cut stayed unable to read (every read timed out
    for 70 s after a 4-s cut, 2026-12-02): the reader replaces a child whose read failed."""
    proxy = TcpProxy(target_port=0)
    broker = TansuBroker(advertised_port=proxy.port).start()  # clients reach it through the proxy
    proxy.target_port = broker.port
    proxy.open()
    topic, group = "cut-offsets", "cut-group"
    try:
        commit_offsets(f"127.0.0.1:{broker.port}", topic, group)
        reader = GroupOffsetsReader(
            bootstrap=f"127.0.0.1:{broker.port}", group=group, topic=topic, partitions=2
        )
        try:
            assert reader.read() == COMMITTED
            proxy.close()
            reader.read()  # may fail or not, by timing
            time.sleep(4)
            proxy.open()
            reads = [reader.read() for _ in range(3)]
            assert COMMITTED in reads, f"no read succeeded after the cut: {reads}"
        finally:
            reader.close()
    finally:
        proxy.stop()
        broker.stop()
