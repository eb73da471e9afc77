"""``jobstream replay``: a producer's repair log, written while its Kafka secondary was
unreachable, re-published to the local broker once it is back; counted on moto's CloudWatch."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobstream.contract import metrics as m
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.publishers import (
    Destination,
    DualWritePublisher,
    KafkaPublisher,
    RepairLog,
    SqsPublisher,
)
from ops.kafka_log import LOGGER_NAME
from rehearsal.servers import TcpProxy
from tests.ops.recovery import STACK, RecoveryStack, envelope

pytestmark = [pytest.mark.moto_server, pytest.mark.kafka]

Run = Any
JOBS = ("job-1", "job-2", "job-3")


def write_during_an_outage(places: RecoveryStack, path: Path) -> None:
    """A dual-writing producer (SQS primary, Kafka secondary) whose brokers are unreachable:
    a proxy in front of the broker that was never opened."""
    assert places.broker is not None
    outage = TcpProxy(places.broker.port)  # never opened: connections are refused
    kafka = KafkaPublisher(
        producer_config(
            f"127.0.0.1:{outage.port}", delivery_timeout_ms=1000, extra={"log_level": 0}
        )
    )
    writer = DualWritePublisher(
        Destination(SqsPublisher(places.client("sqs")), places.urls["queue"]),
        [Destination(kafka, places.topic)],
        repair_log=RepairLog(path),
        secondary_attempts=1,
    )
    writer.publish_batch([envelope(job, routes=["sqs", "kafka"]) for job in JOBS])
    assert writer.drain(30)
    writer.close()
    assert len(RepairLog(path)) == len(JOBS), "the outage left every Kafka copy in the log"


def repaired_in_cloudwatch(places: RecoveryStack) -> float:
    now = datetime.now(UTC)
    points = places.client("cloudwatch").get_metric_statistics(
        Namespace=m.NAMESPACE,
        MetricName=m.SECONDARY_PUBLISH_REPAIRED,
        Dimensions=[{"Name": m.DIM_STACK, "Value": STACK}, {"Name": m.DIM_ROUTE, "Value": "kafka"}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points)


@pytest.fixture
def repair_log(places: RecoveryStack, tmp_path: Path) -> Path:
    places.set_phase(2)
    path = tmp_path / "producer-1.repair.jsonl"
    write_during_an_outage(places, path)
    return path


def test_replay_empties_a_repair_log_after_a_broker_outage(
    places: RecoveryStack, repair_log: Path, run: Run
) -> None:
    result = run("replay", "--stack", STACK, "--repair-log", str(repair_log), "--json")
    doc = result.json()
    assert result.code == 0, result.err
    assert (doc["delivered"], doc["still_failing"], doc["remaining"]) == (3, 0, 0)
    assert len(RepairLog(repair_log)) == 0
    keys = sorted(k.decode() for k, _ in places.topic_records(places.topic) if k)
    assert keys == sorted(JOBS)


def test_replay_counts_the_repairs_in_secondary_publish_repaired(
    places: RecoveryStack, repair_log: Path, run: Run
) -> None:
    run("replay", "--stack", STACK, "--repair-log", str(repair_log), "--json")
    assert repaired_in_cloudwatch(places) == len(JOBS)


def test_replay_dry_run_lists_the_copies_and_publishes_nothing(
    places: RecoveryStack, repair_log: Path, run: Run
) -> None:
    result = run("replay", "--stack", STACK, "--repair-log", str(repair_log), "--dry-run", "--json")
    doc = result.json()
    assert result.code == 0
    assert sorted(e["job_id"] for e in doc["entries"]) == sorted(JOBS)
    assert {e["state"] for e in doc["entries"]} == {"failed"}
    assert len(RepairLog(repair_log)) == len(JOBS)
    assert places.topic_records(places.topic) == []


def test_replay_keeps_what_kafka_still_refuses(
    places: RecoveryStack, repair_log: Path, run: Run
) -> None:
    assert places.broker is not None
    still_down = TcpProxy(places.broker.port)  # never opened: the outage goes on
    places.set_phase(2, bootstrap=f"127.0.0.1:{still_down.port}")
    result = run(
        "replay", "--stack", STACK, "--repair-log", str(repair_log), "--delivery-timeout", "1",
        "--json",
    )  # fmt: skip
    doc = result.json()
    assert result.code == 1
    assert (doc["delivered"], doc["still_failing"], doc["remaining"]) == (0, 3, 3)
    assert len(RepairLog(repair_log)) == len(JOBS)
    assert repaired_in_cloudwatch(places) == 0


def test_replay_against_unreachable_brokers_shows_each_connection_failure_once(
    places: RecoveryStack, repair_log: Path, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka logs a FAIL line on every reconnect (7 a second here); a replay of 3 s showed
    ~20 of them over its own report."""
    assert places.broker is not None
    still_down = TcpProxy(places.broker.port)  # never opened
    places.set_phase(2, bootstrap=f"127.0.0.1:{still_down.port}")
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        result = run(
            "replay", "--stack", STACK, "--repair-log", str(repair_log), "--delivery-timeout",
            "3", "--json",
        )  # fmt: skip
    assert result.code == 1
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    assert len(refused) == 1, "\n".join(r.getMessage() for r in refused)


def test_replay_table_is_readable(places: RecoveryStack, repair_log: Path, run: Run) -> None:
    result = run("replay", "--stack", STACK, "--repair-log", str(repair_log))
    assert result.code == 0
    for text in (
        "job-1",
        "failed",
        places.topic,
        "delivered 3, still failing 0, 0 left in the log",
    ):
        assert text in result.out, text


def test_replay_without_a_repair_log_is_a_usage_error(
    places: RecoveryStack, tmp_path: Path, run: Run
) -> None:
    result = run("replay", "--stack", STACK, "--repair-log", str(tmp_path / "none.jsonl"))
    assert result.code == 2
    assert f"no repair log at {tmp_path / 'none.jsonl'}" in result.err


def test_replay_in_a_phase_without_kafka_exits_6(
    places: RecoveryStack, repair_log: Path, run: Run
) -> None:
    places.set_phase(1)
    result = run("replay", "--stack", STACK, "--repair-log", str(repair_log), "--json")
    assert result.code == 6
    message = result.json()["error"]["message"]
    assert "names no Kafka brokers: there is no Kafka to replay the 3 due" in message
    assert len(RepairLog(repair_log)) == len(JOBS)


def test_replay_of_an_empty_log_in_a_phase_without_kafka_has_nothing_to_replay(
    places: RecoveryStack, tmp_path: Path, run: Run
) -> None:
    """docs/operations.md: exit 0 when there is nothing to replay, in any phase; 6 is for copies
    with nowhere to go."""
    places.set_phase(1)
    empty = tmp_path / "producer-1.repair.jsonl"
    empty.touch()
    result = run("replay", "--stack", STACK, "--repair-log", str(empty), "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert (doc["entries"], doc["brokers"], doc["remaining"]) == ([], None, 0)
    table = run("replay", "--stack", STACK, "--repair-log", str(empty))
    assert table.code == 0, table.err
    assert "Kafka (none in phase 1)" in table.out and "nothing to replay" in table.out
