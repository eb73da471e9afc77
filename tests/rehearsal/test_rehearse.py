from __future__ import annotations

from typing import Any

import pytest

from ops.rehearse import Rehearsal, RehearsalConfig


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One short rehearsal (every phase step, every fault) shared by the tests below."""
    config = RehearsalConfig(phase_seconds=3.0, rate=20.0, outage=4.0, drain_timeout=30.0)
    return Rehearsal(config).run()


pytestmark = [pytest.mark.kafka, pytest.mark.moto_server]


def test_rehearsal_loses_no_job_across_every_phase_change(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["jobs_published"] > 0
    assert (summary["lost"], summary["jobs_applied"]) == (0, summary["jobs_published"])


def test_rehearsal_applies_no_job_twice(report: dict[str, Any]) -> None:
    assert report["summary"]["applied_twice"] == 0
    assert report["ok"] is True


def test_rehearsal_walks_up_rolls_back_and_moves_forward(report: dict[str, Any]) -> None:
    assert [p["phase"] for p in report["phases"]] == [1, 2, 3, 4, 3, 4]


def test_redelivery_after_the_injected_crash_is_suppressed(report: dict[str, Any]) -> None:
    assert report["summary"]["consumer_crashes"] == {"sqs": 1, "kafka": 1}
    assert report["summary"]["duplicates_suppressed"] >= 1


def test_both_poison_messages_are_parked(report: dict[str, Any]) -> None:
    """SQS: the pipe deleted the message, the Batch job fails for good (parked as a failed job,
    never in the DLQ); Kafka: the dead-letter topic."""
    summary = report["summary"]
    assert (summary["poison_injected"], summary["dead_lettered"]) == (2, 2)
    assert summary["sqs_dlq_depth"] == 0


def test_broker_outage_is_repaired_from_the_repair_log(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["secondary_publish_failures"] > 0
    assert summary["repaired_from_repair_log"] == summary["secondary_publish_failures"]


def test_verify_mode_reports_full_parity(report: dict[str, Any]) -> None:
    assert report["summary"]["verify_matches"] > 0
    assert report["summary"]["verify_parity"] == 1.0


def test_metrics_reach_cloudwatch_through_the_buffered_emitter(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["cloudwatch_batches_dropped"] == 0
    assert summary["cloudwatch_jobs_applied"] == summary["jobs_applied_metric"] > 0
