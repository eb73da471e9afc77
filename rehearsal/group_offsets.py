"""A consumer group's committed offsets, read with the admin API in a process of its own.

librdkafka 2.16 can abort the process that owns an admin client when a coordinator-targeted call
(``ListConsumerGroupOffsets``) meets a dropped connection: ``rd_kafka_enq_once_del_source_return:
Assertion `eonce->refcnt > 0' failed`` from ``rd_kafka_admin_coord_response_parse``
(confluentinc/librdkafka#5397, a use-after-free on that error path; open when this was written).
The rehearsal cuts the broker's connections on purpose (the broker advertises the proxy's
address, so the admin client's connection is cut too), and the abort took the whole rehearsal
down; pausing the reads during the cut was not enough (the client aborted afterwards with no
read in flight). So the client lives in this small child process: if librdkafka aborts it, that
read gives no value (MSK publishes nothing it cannot compute either) and the next read starts a
new child. A child whose read fails is replaced too: an admin client whose connections were cut
never read again (every read timed out for 70 s after a 4-s cut; a new client read at once).

Protocol: the parent writes a line per read; the child answers with one JSON line, a list of
``[partition, committed offset]`` or ``null`` when the offsets could not be read.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading

# librdkafka's own timeout for one read; the parent waits a little longer before it gives up on
# the child (and replaces it).
REQUEST_TIMEOUT_SECONDS = 4.0
ANSWER_TIMEOUT_SECONDS = REQUEST_TIMEOUT_SECONDS + 3.0


class GroupOffsetsReader:
    """Reads ``group``'s committed offsets on ``topic`` through a child process; ``read()`` is
    safe to call from several threads (one read at a time)."""

    def __init__(self, *, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._argv = [
            sys.executable, "-m", "rehearsal.group_offsets",
            bootstrap, group, topic, str(partitions),
        ]  # fmt: skip
        self._child: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        # children replaced: they died (librdkafka aborts), stopped answering or failed a read
        self.children_replaced = 0

    def read(self) -> dict[int, int] | None:
        with self._lock:
            child = self._running_child()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write("read\n")
                child.stdin.flush()
                ready, _, _ = select.select([child.stdout], [], [], ANSWER_TIMEOUT_SECONDS)
                line = child.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError):
                line = ""
            answer = json.loads(line) if line else None
            if answer is None:
                # A client whose connections were cut stays unable to read (measured: every read
                # timed out for 70 s after a 4-s cut, while a new client read at once): the next
                # read starts a new one.
                self._discard_child()
                return None
            return {int(p): int(o) for p, o in answer}

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                assert self._child.stdin is not None
                try:
                    self._child.stdin.close()
                    self._child.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    self._child.kill()
                    self._child.wait(5)
                self._child = None

    def _running_child(self) -> subprocess.Popen[str]:
        if self._child is not None and self._child.poll() is not None:
            self._discard_child()
        if self._child is None:
            self._child = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # librdkafka's abort message; counted, not printed
                text=True,
            )
        return self._child

    def _discard_child(self) -> None:
        if self._child is None:
            return
        self.children_replaced += 1
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait(5)
        self._child = None


def _serve(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    for _ in sys.stdin:
        answer: list[list[int]] | None
        try:
            future = admin.list_consumer_group_offsets(
                [request], request_timeout=REQUEST_TIMEOUT_SECONDS
            )[group]
            committed = future.result(timeout=REQUEST_TIMEOUT_SECONDS + 1).topic_partitions
            answer = [[tp.partition, tp.offset] for tp in committed or []]
        except Exception:
            answer = None
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
