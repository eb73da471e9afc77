"""``jobstream parked``: what each dead-letter place holds, read on moto's server and the local
Kafka broker without consuming anything."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobstream.contract.exits import WorkerExit
from tests.ops.recovery import STACK, RecoveryStack, envelope, failed_job_event

pytestmark = [pytest.mark.moto_server]

Run = Any
FAST = ("--kafka-timeout", "1")


def _place(result: Any, name: str) -> dict[str, Any]:
    (found,) = [p for p in result.json()["places"] if p["place"] == name]
    return found


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parked_counts_the_dlq_and_names_its_oldest_message(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.park_in_dlq(envelope("job-1").to_json(), "job-1")
    sqs_places.park_in_dlq(envelope("job-2").to_json(), "job-2")
    result = run("parked", "--stack", STACK, "--json")
    dlq = _place(result, "dlq")
    assert result.code == 1
    assert (dlq["count"], dlq["movable"], dlq["complete"]) == (2, 2, True)
    assert [j["job_id"] for j in dlq["jobs"]] == ["job-1", "job-2"], "oldest first"
    assert dlq["oldest"] == dlq["jobs"][0]["parked_at"]
    assert 0 <= dlq["oldest_age_seconds"] < 60
    assert "maxReceiveCount" in dlq["jobs"][0]["reason"]


def test_parked_reads_a_failed_jobs_reason_from_the_exit_status_and_the_status_reason(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.capture_failed_job(
        failed_job_event(
            envelope("job-7").to_json(), exit_code=WorkerExit.HANDLER_FAILED, job_id="batch-7"
        )
    )
    (job,) = _place(run("parked", "--stack", STACK, "--json"), "failed-jobs")["jobs"]
    assert (job["job_id"], job["batch_job_id"], job["state"]) == ("job-7", "batch-7", "movable")
    assert job["reason"] == (
        "handler failed on every attempt (attempt 1); Essential container in task exited"
    )


def test_parked_dates_a_failed_job_by_its_event_time(sqs_places: RecoveryStack, run: Run) -> None:
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    sqs_places.capture_failed_job(
        failed_job_event(envelope("job-old").to_json(), exit_code=70, stopped=stopped)
    )
    place = _place(run("parked", "--stack", STACK, "--json"), "failed-jobs")
    assert datetime.fromisoformat(place["oldest"]) == stopped
    assert 3 * 3600 <= place["oldest_age_seconds"] < 3 * 3600 + 60


def test_parked_says_when_a_failed_jobs_record_holds_no_message_body(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.capture_failed_job(
        failed_job_event(
            None,
            exit_code=None,
            job_id="batch-9",
            status_reason="Container Overrides length must be at most 8192",
        )
    )
    place = _place(run("parked", "--stack", STACK, "--json"), "failed-jobs")
    (job,) = place["jobs"]
    assert (place["no_body"], job["state"], job["job_id"]) == (1, "no-body", None)
    assert "holds no message body" in job["problem"]
    assert "JOBSTREAM_JOB_MESSAGE" in job["problem"]
    assert job["reason"].startswith("no exit status (the container did not start")
    assert "Container Overrides length must be at most 8192" in job["reason"]


def test_parked_marks_a_poison_message_as_never_moved(sqs_places: RecoveryStack, run: Run) -> None:
    sqs_places.capture_failed_job(failed_job_event("{not json", exit_code=WorkerExit.POISON))
    place = _place(run("parked", "--stack", STACK, "--json"), "failed-jobs")
    (job,) = place["jobs"]
    assert (place["poison"], place["movable"], job["state"]) == (1, 0, "poison")
    assert job["reason"].startswith("poison message (not a valid envelope)")
    assert job["problem"].startswith("not a valid envelope: message body is not JSON")


def test_parked_consumes_nothing(sqs_places: RecoveryStack, run: Run) -> None:
    sqs_places.park_in_dlq(envelope("job-1").to_json())
    sqs_places.capture_failed_job(failed_job_event(envelope("job-2").to_json(), exit_code=70))
    first = run("parked", "--stack", STACK, "--json").json()
    assert (sqs_places.visible("dlq"), sqs_places.visible("failed-jobs")) == (1, 1), (
        "a message read by parked is not visible again at once"
    )
    second = run("parked", "--stack", STACK, "--json").json()
    assert [p.get("count") for p in first["places"]] == [p.get("count") for p in second["places"]]


def test_parked_exits_0_when_nothing_is_parked(sqs_places: RecoveryStack, run: Run) -> None:
    result = run("parked", "--stack", STACK)
    assert result.code == 0, result.out
    assert "nothing is parked" in result.out


def test_a_place_the_phase_does_not_have_holds_nothing(sqs_places: RecoveryStack, run: Run) -> None:
    """Phase 1 has no Kafka: its routing document names no dead-letter topic."""
    topic = _place(run("parked", "--stack", STACK, "--json"), "dead-letter-topic")
    assert (topic["exists"], topic["count"]) == (False, 0)


@pytest.mark.kafka
def test_parked_lists_the_dead_letter_topic_with_the_consumers_reason(
    places: RecoveryStack, run: Run
) -> None:
    places.dead_letter(envelope("job-k", routes=["kafka"]).to_bytes(), "job-k", "handler failed")
    places.dead_letter(b"\x00garbage", "job-p", "message body is not JSON")
    topic = _place(run("parked", "--stack", STACK, "--json", *FAST), "dead-letter-topic")
    by_id = {j["job_id"]: j for j in topic["jobs"]}
    assert (topic["count"], topic["movable"], topic["poison"]) == (2, 1, 1)
    assert by_id["job-k"]["reason"].startswith(f"handler failed (from {places.topic}/0/")
    assert by_id["job-p"]["state"] == "poison", "a poison record keeps its key as the job id"


@pytest.mark.kafka
def test_parked_reads_the_dead_letter_topic_without_committing(
    places: RecoveryStack, run: Run
) -> None:
    places.dead_letter(envelope("job-k").to_bytes(), "job-k", "handler failed")
    run("parked", "--stack", STACK, "--json", *FAST)
    again = _place(run("parked", "--stack", STACK, "--json", *FAST), "dead-letter-topic")
    assert (again["count"], again["redriven"]) == (1, 0)


def test_parked_is_cannot_tell_where_the_brokers_cannot_be_reached(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.set_phase(3, bootstrap=f"127.0.0.1:{_closed_port()}")
    result = run("parked", "--stack", STACK, "--json", *FAST)
    topic = _place(result, "dead-letter-topic")
    assert result.code == 1
    assert result.json()["cannot_tell"] == ["dead-letter-topic"]
    assert topic["cannot_tell"].startswith("cannot reach the Kafka brokers")
    assert _place(result, "dlq")["count"] == 0, "the other places are still read"


def test_parked_table_is_readable(sqs_places: RecoveryStack, run: Run) -> None:
    sqs_places.capture_failed_job(failed_job_event(envelope("job-7").to_json(), exit_code=70))
    sqs_places.capture_failed_job(failed_job_event("{oops", exit_code=65))
    result = run("parked", "--stack", STACK)
    assert result.code == 1
    for text in (
        "parked: stack dev (us-east-1), phase 1",
        "failed-jobs capture",
        "jobstream-dev-failed-jobs",
        "job-7",
        "handler failed on every attempt (attempt 1)",
        "poison",
        "jobstream redrive --stack dev",
    ):
        assert text in result.out, text
