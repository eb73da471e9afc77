"""A short rehearsal (phases 1 -> 2 -> 3 -> 4, a few seconds each, every fault): the same engine as
``make rehearse``, which runs the full walk. Real processes on real protocols, so slow (about a
minute); one run is shared by the tests of this module."""

from __future__ import annotations

from typing import Any

import pytest

from rehearsal.config import RehearsalConfig
from rehearsal.engine import Rehearsal

pytestmark = [pytest.mark.moto_server, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

SHORT = RehearsalConfig(
    steps=(1, 2, 3, 4), step_seconds=6.0, sqs_rate=4.0, kafka_rate=30.0, producers=2, consumers=2
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return Rehearsal(SHORT).run()


def test_no_job_is_lost_or_applied_twice(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["published"] > 100
    assert (summary["lost"], summary["applied_twice"]) == (0, 0), report["lost_jobs"]
    assert report["ok"], {
        "parked as expected": summary["parked_as_expected"],
        "gates forced": [g for s in report["steps"] for g in s["gates"] if g.get("forced")],
    }


def test_what_is_parked_is_what_the_faults_park(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parked_as_expected"], {
        "jobs parked unexpectedly": report["parked_unexpected"],
        "jobs not parked": report["parked_missing"],
        "poison not archived": report["poison_not_archived"],
        "poison archived unexpectedly": report["poison_archived_unexpectedly"],
        "faults": report["faults"],
    }
    assert summary["parked_poison"] == {"failed-jobs": 2, "dlq": 0, "dead-letter-topic": 2}


def test_every_fault_of_the_walk_is_injected(report: dict[str, Any]) -> None:
    assert set(report["faults"]) >= {
        "poison-sqs", "poison-kafka", "batch-job-sigkill", "consumer-sigkill",
        "producer-sigkill", "broker-outage-dual-write", "broker-outage-kafka-primary",
        "ssm-outage",
    }  # fmt: skip
    assert report["summary"]["routing_stale_reports"] > 0


def test_each_change_waited_for_its_gates(report: dict[str, Any]) -> None:
    for step in report["steps"][1:]:
        blocking = [g for g in step["gates"] if g["blocking"]]
        assert blocking, f"step {step['step']}: no gate evaluated"
        failed = [(g["name"], g["figure"]) for g in blocking if g["verdict"] != "pass"]
        assert not failed, f"step {step['step']}: forced past its failing gates {failed}"


def test_the_operator_used_its_own_commands(report: dict[str, Any]) -> None:
    used = report["summary"]["operator_commands"]
    assert {"parked", "redrive"} <= set(used), used
