from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest

from jobstream.contract import metrics as m
from jobstream.contract.routing import Routing
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.metrics import CloudWatchMetrics, InMemoryMetrics
from jobstream.messaging.publishers import (
    Destination,
    DualWritePublisher,
    KafkaPublisher,
    PublishError,
    RepairLog,
    RoutedPublisher,
    SqsPublisher,
)
from jobstream.messaging.routing import StaticRouting
from rehearsal.servers import TansuBroker, TcpProxy
from tests.runtime.messaging.conftest import Aws, create_topics
from tests.runtime.messaging.test_routing import routing_for


class MemoryQueue:
    """An in-memory route for the dual-write logic (real routes are tested below)."""

    def __init__(self, route: str, fail: bool = False) -> None:
        self.route = route
        self.fail = fail
        self.sent: list[str] = []

    def publish(self, topic: str, message: Envelope) -> None:
        self.publish_batch(topic, [message])

    def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
        if self.fail:
            raise PublishError(self.route, {e.job_id: "down" for e in messages})
        self.sent += [e.job_id for e in messages]

    def close(self) -> None:
        pass


def _job(i: int = 1) -> Envelope:
    return Envelope.new("embed", {"i": i}, job_id=f"job-{i}")


def test_secondary_failure_does_not_fail_the_publish_and_is_recorded_for_repair() -> None:
    primary, secondary = MemoryQueue("sqs"), MemoryQueue("kafka", fail=True)
    metrics, repair = InMemoryMetrics(), RepairLog()
    writer = DualWritePublisher(
        Destination(primary, "q"), [Destination(secondary, "t")],
        repair_log=repair, metrics=metrics, backoff=0,
    )  # fmt: skip
    writer.publish(_job())
    writer.drain()
    assert primary.sent == ["job-1"]
    assert [e.envelope.job_id for e in repair.entries()] == ["job-1"]
    assert metrics.total("SecondaryPublishFailures", Route="kafka") == 1


def test_primary_failure_fails_the_publish_and_skips_the_secondary() -> None:
    primary, secondary = MemoryQueue("sqs", fail=True), MemoryQueue("kafka")
    writer = DualWritePublisher(
        Destination(primary, "q"), [Destination(secondary, "t")], repair_log=RepairLog()
    )
    with pytest.raises(PublishError):
        writer.publish(_job())
    writer.drain()
    assert secondary.sent == []


def test_repair_log_replay_publishes_recorded_envelopes_once_the_route_is_back(
    tmp_path: Path,
) -> None:
    repair = RepairLog(tmp_path / "repair.jsonl")
    repair.record("kafka", "t", [_job(1), _job(2)], "down")
    kafka = MemoryQueue("kafka")
    assert RepairLog(tmp_path / "repair.jsonl").replay({"kafka": kafka}) == (2, 0)
    assert kafka.sent == ["job-1", "job-2"]
    assert len(RepairLog(tmp_path / "repair.jsonl")) == 0


def test_repair_log_replay_counts_each_republished_entry_as_repaired() -> None:
    class PickyQueue(MemoryQueue):
        def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
            if any(e.job_id == "job-2" for e in messages):
                raise PublishError(self.route, {"job-2": "still refused"})
            super().publish_batch(topic, messages)

    metrics = InMemoryMetrics()
    repair = RepairLog(metrics=metrics)
    repair.record("kafka", "t", [_job(1), _job(2), _job(3)], "down")
    assert repair.replay({"kafka": PickyQueue("kafka")}) == (2, 1)
    assert metrics.total(m.SECONDARY_PUBLISH_REPAIRED, Route="kafka") == 2, (
        "SecondaryPublishRepaired{Route=kafka} must count the 2 entries re-published, "
        "not the one still in the log"
    )
    assert [e.envelope.job_id for e in repair.entries()] == ["job-2"]


def test_repair_log_replay_counts_nothing_when_every_entry_fails_again() -> None:
    metrics = InMemoryMetrics()
    repair = RepairLog(metrics=metrics)
    repair.record("kafka", "t", [_job(1)], "down")
    assert repair.replay({"kafka": MemoryQueue("kafka", fail=True)}) == (0, 1)
    assert metrics.total(m.SECONDARY_PUBLISH_REPAIRED) == 0


@pytest.mark.moto_server
def test_failed_and_repaired_secondary_writes_read_back_equal_from_cloudwatch(
    aws_local: Aws,
) -> None:
    """What the cutover preflight compares: failures and repairs of one stack, via moto."""
    cw = aws_local.client("cloudwatch")
    emitter = CloudWatchMetrics(cw, "dev", interval=None)
    repair = RepairLog(metrics=emitter)
    kafka = MemoryQueue("kafka", fail=True)
    writer = DualWritePublisher(
        Destination(MemoryQueue("sqs"), "q"), [Destination(kafka, "t")],
        repair_log=repair, metrics=emitter, secondary_attempts=1,
    )  # fmt: skip
    writer.publish_batch([_job(i) for i in range(4)])
    writer.drain()
    writer.close()
    kafka.fail = False
    assert repair.replay({"kafka": kafka}) == (4, 0)
    emitter.close()
    now = dt.datetime.now(dt.UTC)

    def total(name: str) -> float:
        stats = cw.get_metric_statistics(
            Namespace=m.NAMESPACE,
            MetricName=name,
            Dimensions=[{"Name": "Stack", "Value": "dev"}, {"Name": "Route", "Value": "kafka"}],
            StartTime=now - dt.timedelta(minutes=5),
            EndTime=now + dt.timedelta(minutes=5),
            Period=60,
            Statistics=["Sum"],
        )
        return sum(p.get("Sum", 0) for p in stats["Datapoints"])

    assert (total(m.SECONDARY_PUBLISH_FAILURES), total(m.SECONDARY_PUBLISH_REPAIRED)) == (4, 4)
    assert kafka.sent == [f"job-{i}" for i in range(4)]


def test_full_secondary_backlog_records_for_repair_instead_of_blocking() -> None:
    class SlowQueue(MemoryQueue):
        def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
            import time

            time.sleep(0.2)
            super().publish_batch(topic, messages)

    repair = RepairLog()
    writer = DualWritePublisher(
        Destination(MemoryQueue("sqs"), "q"), [Destination(SlowQueue("kafka"), "t")],
        repair_log=repair, max_pending=1,
    )  # fmt: skip
    for i in range(5):
        writer.publish(_job(i))
    writer.drain()
    assert len(repair) >= 2


def test_routed_publisher_stamps_the_phase_routes_into_the_envelope() -> None:
    sqs, kafka = MemoryQueue("sqs"), MemoryQueue("kafka")
    routed = RoutedPublisher(
        StaticRouting(routing_for(2)), {"sqs": sqs, "kafka": kafka}, repair_log=RepairLog()
    )
    sent = routed.publish(_job())
    routed.drain()
    assert sent.routes == ("sqs", "kafka")
    assert (sqs.sent, kafka.sent) == (["job-1"], ["job-1"])


def test_routed_publisher_in_phase_four_publishes_to_kafka_only() -> None:
    sqs, kafka = MemoryQueue("sqs"), MemoryQueue("kafka")
    routed = RoutedPublisher(
        StaticRouting(routing_for(4)), {"sqs": sqs, "kafka": kafka}, repair_log=RepairLog()
    )
    assert routed.publish(_job()).routes == ("kafka",)
    routed.drain()
    assert (sqs.sent, kafka.sent) == ([], ["job-1"])


@pytest.mark.moto_server
@pytest.mark.kafka
def test_dual_write_over_real_routes_survives_a_kafka_outage(
    aws_local: Aws, kafka_broker: TansuBroker, topic_name: str
) -> None:
    """SQS (moto) primary, Kafka (Tansu behind a proxy that is shut) secondary."""
    create_topics(kafka_broker.bootstrap, topic_name)
    proxy = TcpProxy(kafka_broker.port)
    sqs_client = aws_local.client("sqs")
    url = sqs_client.create_queue(QueueName="jobs")["QueueUrl"]
    kafka = KafkaPublisher(
        producer_config(f"127.0.0.1:{proxy.port}", delivery_timeout_ms=1500, extra={"log_level": 0})
    )  # proxy never opened: the broker is unreachable
    routing: Routing = routing_for(2, queue_url=url, topic=topic_name)
    repair = RepairLog()
    routed = RoutedPublisher(
        StaticRouting(routing), {"sqs": SqsPublisher(sqs_client), "kafka": kafka},
        repair_log=repair, secondary_attempts=1,
    )  # fmt: skip
    routed.publish(_job(7))
    routed.drain()
    assert (
        int(
            sqs_client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        == 1
    )
    assert [e.envelope.job_id for e in repair.entries()] == ["job-7"]


class PartlyRefusingQueue(MemoryQueue):
    """A primary that accepts a batch except the job ids in ``refuse`` (SendMessageBatch's
    per-entry ``Failed`` list)."""

    def __init__(self, route: str, refuse: set[str]) -> None:
        super().__init__(route)
        self.refuse = refuse

    def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
        self.sent += [e.job_id for e in messages if e.job_id not in self.refuse]
        failed = {e.job_id: "InternalError" for e in messages if e.job_id in self.refuse}
        if failed:
            raise PublishError(self.route, failed)


def test_a_partial_primary_failure_still_sends_the_accepted_jobs_to_the_secondary() -> None:
    primary, secondary = PartlyRefusingQueue("sqs", {"job-2"}), MemoryQueue("kafka")
    writer = DualWritePublisher(
        Destination(primary, "q"), [Destination(secondary, "t")], repair_log=RepairLog()
    )
    with pytest.raises(PublishError) as refused:
        writer.publish_batch([_job(1), _job(2), _job(3)])
    writer.drain()
    assert set(refused.value.failed) == {"job-2"}
    assert secondary.sent == ["job-1", "job-3"], (
        "the Kafka copies of the jobs SQS accepted were dropped with the batch"
    )


def test_secondary_copies_in_flight_are_journaled_before_they_are_sent(tmp_path: Path) -> None:
    """A producer killed with copies in flight leaves them in the repair log (pending); the next
    producer on the log marks them for replay. Here the secondary never answers, as if the
    process died before it could."""
    import threading

    hold = threading.Event()

    class HangingQueue(MemoryQueue):
        def publish_batch(self, topic: str, messages: Sequence[Envelope]) -> None:
            hold.wait(5)
            super().publish_batch(topic, messages)

    path = tmp_path / "repair.jsonl"
    writer = DualWritePublisher(
        Destination(MemoryQueue("sqs"), "q"), [Destination(HangingQueue("kafka"), "t")],
        repair_log=RepairLog(path),
    )  # fmt: skip
    writer.publish_batch([_job(1), _job(2)])
    # the process "dies" here: a new producer opens the same log
    metrics = InMemoryMetrics()
    restarted = RepairLog(path, metrics=metrics)
    assert [e.envelope.job_id for e in restarted.entries(include_pending=True)] == [
        "job-1",
        "job-2",
    ], "the in-flight secondary backlog was lost with the producer"
    assert restarted.adopt_orphans() == 2
    assert [e.envelope.job_id for e in restarted.entries()] == ["job-1", "job-2"]
    assert metrics.total(m.SECONDARY_PUBLISH_FAILURES, Route="kafka") == 2
    hold.set()
    writer.close()


def test_a_confirmed_copy_leaves_the_repair_log(tmp_path: Path) -> None:
    path = tmp_path / "repair.jsonl"
    writer = DualWritePublisher(
        Destination(MemoryQueue("sqs"), "q"), [Destination(MemoryQueue("kafka"), "t")],
        repair_log=RepairLog(path),
    )  # fmt: skip
    writer.publish_batch([_job(1), _job(2)])
    writer.drain()
    writer.close()
    assert RepairLog(path).entries(include_pending=True) == []


def test_replay_of_pending_copies_needs_them_to_be_old_enough(tmp_path: Path) -> None:
    """An operator's replay beside a live producer leaves its fresh in-flight copies alone."""
    path = tmp_path / "repair.jsonl"
    log = RepairLog(path)
    log.add_pending("kafka", "t", [_job(1)])
    kafka = MemoryQueue("kafka")
    assert RepairLog(path).replay({"kafka": kafka}, pending_older_than=300) == (0, 0)
    assert RepairLog(path).replay({"kafka": kafka}, pending_older_than=0) == (1, 0)
    assert kafka.sent == ["job-1"]
    assert RepairLog(path).entries(include_pending=True) == []


def test_compaction_keeps_only_outstanding_copies(tmp_path: Path) -> None:
    path = tmp_path / "repair.jsonl"
    log = RepairLog(path)
    ids = log.add_pending("kafka", "t", [_job(i) for i in range(5)])
    log.mark_delivered(ids[:4])
    log.compact()
    assert len(path.read_text().splitlines()) == 1
    assert [e.envelope.job_id for e in RepairLog(path).entries(include_pending=True)] == ["job-4"]


def test_a_line_cut_short_by_a_crash_does_not_lose_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "repair.jsonl"
    RepairLog(path).record("kafka", "t", [_job(1)], "down")
    with path.open("a") as f:
        f.write('{"op": "pending", "id": "x-1", "rou')
    assert [e.envelope.job_id for e in RepairLog(path).entries()] == ["job-1"]
