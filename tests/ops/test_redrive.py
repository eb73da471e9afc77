"""``jobstream redrive``: parked jobs back on the route the phase consumes, on moto's server and
the local Kafka broker (the worker applying them is in test_recovery_end_to_end.py)."""

from __future__ import annotations

import io
import json
import os
import signal
from collections import Counter
from typing import Any

import pytest

from jobstream.contract.exits import WorkerExit
from jobstream.messaging.envelope import Envelope
from ops import redrive
from ops.dead_letters import Parked
from tests.ops.recovery import STACK, RecoveryStack, envelope, failed_job_event

pytestmark = [pytest.mark.moto_server]

Run = Any
FAST = ("--kafka-timeout", "1")


def _redrive(run: Run, source: str, *extra: str) -> Any:
    return run("redrive", "--stack", STACK, "--source", source, "--json", *FAST, *extra)


def _job_ids(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(Envelope.from_json(m["Body"]).job_id for m in messages)


def _interrupt_before_send(monkeypatch: pytest.MonkeyPatch, target: type, call: int) -> None:
    """Ctrl-C (a real SIGINT to this process) just before the ``call``-th copy is sent: after the
    previous message was copied and deleted, before the next one is touched."""
    real = target.send
    calls: list[str | None] = []

    def send(self: Any, item: Parked) -> None:
        calls.append(item.job_id)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGINT)
        real(self, item)

    monkeypatch.setattr(target, "send", send)


# ---- the SQS places -----------------------------------------------------------------------------


def test_redrive_puts_failed_jobs_back_on_the_job_queue_with_the_envelope_unchanged(
    sqs_places: RecoveryStack, run: Run
) -> None:
    body = envelope("job-7").to_json()
    sqs_places.capture_failed_job(failed_job_event(body, exit_code=WorkerExit.HANDLER_FAILED))
    result = _redrive(run, "failed-jobs", "--yes")
    doc = result.json()
    assert result.code == 0, result.err
    assert (doc["target"]["route"], [j["job_id"] for j in doc["moved"]]) == ("sqs", ["job-7"])
    (copy,) = sqs_places.drain("queue")
    assert copy["Body"] == body, "the envelope must reach the job queue byte for byte"
    assert copy["MessageAttributes"]["job_id"]["StringValue"] == "job-7"
    assert sqs_places.depth("failed-jobs") == 0, "the parked message is deleted once copied"


def test_redrive_never_moves_a_poison_message_or_a_record_without_its_body(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.capture_failed_job(failed_job_event("{not json", exit_code=WorkerExit.POISON))
    sqs_places.capture_failed_job(failed_job_event(None, exit_code=None, job_id="batch-9"))
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    doc = _redrive(run, "failed-jobs", "--yes").json()
    assert [j["job_id"] for j in doc["moved"]] == ["job-1"]
    assert sorted(j["state"] for j in doc["left_parked"]) == ["no-body", "poison"]
    assert (sqs_places.depth("failed-jobs"), sqs_places.depth("queue")) == (2, 1)


def test_archive_poison_writes_each_poison_message_then_removes_it_from_the_place(
    sqs_places: RecoveryStack, run: Run, tmp_path: Any
) -> None:
    """Inspected poison leaves the place (so the gates that need it empty can pass) but is never
    silently gone: its body and reason are in the archive first."""
    archive = tmp_path / "poison.jsonl"
    sqs_places.capture_failed_job(failed_job_event("{not json", exit_code=WorkerExit.POISON))
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    doc = _redrive(run, "failed-jobs", "--yes", "--archive-poison", str(archive)).json()
    assert [j["job_id"] for j in doc["moved"]] == ["job-1"]
    assert [j["state"] for j in doc["archived"]] == ["poison"]
    (line,) = [json.loads(x) for x in archive.read_text().splitlines()]
    assert (line["body"], line["state"], line["place"]) == ("{not json", "poison", "failed-jobs")
    assert "poison message" in line["reason"]
    assert sqs_places.depth("failed-jobs") == 0


def test_without_archive_poison_a_dry_run_archives_nothing(
    sqs_places: RecoveryStack, run: Run, tmp_path: Any
) -> None:
    archive = tmp_path / "poison.jsonl"
    sqs_places.capture_failed_job(failed_job_event("{not json", exit_code=WorkerExit.POISON))
    doc = _redrive(run, "failed-jobs", "--dry-run", "--archive-poison", str(archive)).json()
    assert [j["state"] for j in doc["would_archive"]] == ["poison"]
    assert not archive.exists() and sqs_places.depth("failed-jobs") == 1


def test_redrive_dry_run_lists_what_would_move_and_moves_nothing(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    result = _redrive(run, "failed-jobs", "--dry-run")
    assert result.code == 0
    assert [j["job_id"] for j in result.json()["would_move"]] == ["job-1"]
    assert result.json()["moved"] == []
    assert (sqs_places.depth("failed-jobs"), sqs_places.depth("queue")) == (1, 0)


def test_redrive_refuses_to_ask_when_stdin_is_not_a_terminal(
    sqs_places: RecoveryStack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    result = run("redrive", "--stack", STACK, "--source", "failed-jobs")
    assert result.code == 2
    assert "stdin is not a terminal" in result.err
    assert "hint: pass --yes" in result.err
    assert "Traceback" not in result.err
    assert sqs_places.depth("failed-jobs") == 1


def test_redrive_with_job_ids_moves_only_those_jobs(sqs_places: RecoveryStack, run: Run) -> None:
    for job in ("job-1", "job-2", "job-3"):
        sqs_places.capture_failed_job(failed_job_event(envelope(job).to_json(), exit_code=70))
    doc = _redrive(run, "failed-jobs", "--yes", "--job-id", "job-2", "--job-id", "job-9").json()
    assert [j["job_id"] for j in doc["moved"]] == ["job-2"]
    assert doc["not_parked"] == ["job-9"]
    assert _job_ids(sqs_places.drain("queue")) == ["job-2"]
    assert sqs_places.depth("failed-jobs") == 2


def test_a_job_id_that_names_nothing_parked_exits_1(sqs_places: RecoveryStack, run: Run) -> None:
    """A typo in --job-id (or a job already moved) must not read as a redrive that did its work."""
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    result = _redrive(run, "failed-jobs", "--yes", "--job-id", "job-9")
    assert result.code == 1, result.err
    doc = result.json()
    assert (doc["not_parked"], doc["moved"], doc["exit_code"]) == (["job-9"], [], 1)
    assert doc["notes"] == [], "the whole place was read: no --limit note"
    assert sqs_places.depth("failed-jobs") == 1


def test_a_job_id_not_found_in_a_read_cut_short_by_limit_says_so(
    sqs_places: RecoveryStack, run: Run
) -> None:
    for job in ("job-1", "job-2"):
        sqs_places.capture_failed_job(failed_job_event(envelope(job).to_json(), exit_code=70))
    result = run(
        "redrive", "--stack", STACK, "--source", "failed-jobs", "--dry-run", "--limit", "1",
        "--job-id", "job-9", *FAST,
    )  # fmt: skip
    assert result.code == 1, result.err
    assert "job-9: not parked in" in result.out
    assert "only the first 1 messages" in result.out and "(--limit)" in result.out


def test_redrive_of_the_dlq_copies_when_the_endpoint_has_no_message_move_task(
    sqs_places: RecoveryStack, run: Run
) -> None:
    """moto 5.2.5 does not implement StartMessageMoveTask (HTTP 500): the command says so and
    copies one message at a time instead."""
    sqs_places.park_in_dlq(envelope("job-1").to_json(), "job-1")
    sqs_places.park_in_dlq(envelope("job-2").to_json(), "job-2")
    result = _redrive(run, "dlq", "--yes")
    doc = result.json()
    assert result.code == 0, doc
    assert doc["method"] == "copy"
    assert any(n.startswith("StartMessageMoveTask is not available here") for n in doc["notes"])
    assert _job_ids(sqs_places.drain("queue")) == ["job-1", "job-2"]
    assert sqs_places.depth("dlq") == 0


def test_redrive_of_the_dlq_plans_the_message_move_task_when_nothing_is_poison(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.park_in_dlq(envelope("job-1").to_json(), "job-1")
    assert _redrive(run, "dlq", "--dry-run").json()["method"] == "message-move-task"
    sqs_places.park_in_dlq("{poison", None)
    assert _redrive(run, "dlq", "--dry-run").json()["method"] == "copy", (
        "the message-move task would move the poison message too"
    )


def test_a_dlq_scan_cut_short_by_limit_copies_instead_of_moving_the_unchecked_rest(
    sqs_places: RecoveryStack, run: Run
) -> None:
    for job in ("job-1", "job-2", "job-3"):
        sqs_places.park_in_dlq(envelope(job).to_json(), job)
    document = _redrive(run, "dlq", "--dry-run", "--limit", "2").json()
    assert document["method"] == "copy", (
        "the message-move task moves the whole DLQ, also the messages the scan never checked"
    )
    assert _redrive(run, "dlq", "--dry-run", "--limit", "4").json()["method"] == (
        "message-move-task"
    )


@pytest.mark.usefixtures("ctrl_c_raises")
def test_an_interrupted_redrive_rerun_moves_nothing_twice(
    sqs_places: RecoveryStack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = ["job-1", "job-2", "job-3", "job-4"]
    for job in jobs:
        sqs_places.capture_failed_job(failed_job_event(envelope(job).to_json(), exit_code=70))
    with monkeypatch.context() as patch:
        _interrupt_before_send(patch, redrive.SqsTarget, call=2)
        first = _redrive(run, "failed-jobs", "--yes")
    assert first.code == 130
    assert (first.json()["interrupted"], len(first.json()["moved"])) == (True, 1)
    assert sqs_places.visible("failed-jobs") == 3, "the messages not moved are visible again"
    second = _redrive(run, "failed-jobs", "--yes")
    assert second.code == 0
    assert len(second.json()["moved"]) == 3
    assert Counter(_job_ids(sqs_places.drain("queue"))) == Counter(jobs), "each job moved once"


def test_a_missing_job_queue_leaves_nowhere_to_redrive_to(
    sqs_places: RecoveryStack, run: Run
) -> None:
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    sqs_places.client("sqs").delete_queue(QueueUrl=sqs_places.urls["queue"])
    result = _redrive(run, "failed-jobs", "--yes")
    assert result.code == 6
    assert "that phase 1 consumes does not exist" in result.json()["error"]["message"]
    assert sqs_places.depth("failed-jobs") == 1


def test_redrive_table_names_what_moved_and_what_stays(sqs_places: RecoveryStack, run: Run) -> None:
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    sqs_places.capture_failed_job(failed_job_event("{bad", exit_code=65))
    result = run("redrive", "--stack", STACK, "--source", "failed-jobs", "--yes")
    assert result.code == 0
    for text in (
        "failed-jobs capture jobstream-dev-failed-jobs -> SQS job queue jobstream-dev-jobs",
        "job-1",
        "stays (poison)",
        "moved 1 job(s)",
    ):
        assert text in result.out, text


# ---- the Kafka dead-letter topic ----------------------------------------------------------------


@pytest.mark.kafka
def test_redrive_in_phase_5_puts_dead_letter_records_back_on_the_jobs_topic(
    places: RecoveryStack, run: Run
) -> None:
    places.set_phase(5)
    value = envelope("job-k", routes=["kafka"]).to_bytes()
    places.dead_letter(value, "job-k", "handler failed")
    places.dead_letter(b"garbage", "job-p", "message body is not JSON")
    doc = _redrive(run, "dead-letter-topic", "--yes").json()
    assert doc["target"] == {"route": "kafka", "name": places.topic}
    assert [j["job_id"] for j in doc["moved"]] == ["job-k"]
    assert [j["state"] for j in doc["left_parked"]] == ["poison"]
    assert places.topic_records(places.topic) == [(b"job-k", value)], "key and bytes unchanged"


@pytest.mark.kafka
def test_archive_poison_on_the_topic_writes_the_record_and_commits_past_it(
    places: RecoveryStack, run: Run, tmp_path: Any
) -> None:
    archive = tmp_path / "poison.jsonl"
    places.set_phase(5)
    places.dead_letter(b"garbage", "job-p", "message body is not JSON")
    doc = _redrive(run, "dead-letter-topic", "--yes", "--archive-poison", str(archive)).json()
    assert [j["state"] for j in doc["archived"]] == ["poison"]
    assert json.loads(archive.read_text())["body"] == "garbage"
    again = _redrive(run, "dead-letter-topic", "--yes").json()
    assert (again["moved"], again["left_parked"]) == ([], []), "archived records are not read again"


@pytest.mark.kafka
def test_a_poison_record_left_without_archive_poison_stops_the_offset_so_archiving_finds_it(
    places: RecoveryStack, run: Run, tmp_path: Any
) -> None:
    """A redrive that moves the jobs around a poison record must not commit past the poison: it
    would vanish from ``redrive`` (which reads from the committed offset) without having been
    archived, and no later ``--archive-poison`` could take it out."""
    places.set_phase(5)
    places.dead_letter(envelope("job-a").to_bytes(), "job-a", "handler failed", partition=0)
    places.dead_letter(b"garbage", "job-p", "message body is not JSON", partition=0)
    places.dead_letter(envelope("job-b").to_bytes(), "job-b", "handler failed", partition=0)
    first = _redrive(run, "dead-letter-topic", "--yes").json()
    assert sorted(j["job_id"] for j in first["moved"]) == ["job-a", "job-b"]
    assert first["moved_again_by_a_later_redrive"] == ["job-b"], "job-b is past the poison"
    archive = tmp_path / "poison.jsonl"
    second = _redrive(run, "dead-letter-topic", "--yes", "--archive-poison", str(archive)).json()
    assert [j["state"] for j in second["archived"]] == ["poison"], (
        "the poison left by the first redrive must still be there to archive"
    )
    assert json.loads(archive.read_text())["body"] == "garbage"
    assert [j["job_id"] for j in second["moved"]] == ["job-b"], "job-b was not committed past"


@pytest.mark.kafka
def test_a_poison_archived_past_a_record_left_behind_is_listed_as_archived_again_later(
    places: RecoveryStack, run: Run, tmp_path: Any
) -> None:
    places.set_phase(5)
    places.dead_letter(envelope("job-a").to_bytes(), "job-a", "handler failed", partition=0)
    places.dead_letter(b"garbage", "job-p", "message body is not JSON", partition=0)
    archive = str(tmp_path / "poison.jsonl")
    doc = _redrive(
        run, "dead-letter-topic", "--yes", "--archive-poison", archive, "--job-id", "job-p"
    ).json()
    assert [j["state"] for j in doc["archived"]] == ["poison"]
    assert len(doc["archived_again_by_a_later_redrive"]) == 1, (
        "job-a, not selected, stops the offset"
    )
    assert any("archived past a record that stays parked" in n for n in doc["notes"]), doc["notes"]


@pytest.mark.kafka
def test_parked_counts_an_archived_poison_record_as_archived_not_as_parked(
    places: RecoveryStack, run: Run, tmp_path: Any
) -> None:
    places.set_phase(5)
    places.dead_letter(b"garbage", "job-p", "message body is not JSON")
    archive = str(tmp_path / "poison.jsonl")
    doc = _redrive(run, "dead-letter-topic", "--yes", "--archive-poison", archive).json()
    assert len(doc["archived"]) == 1
    parked = run("parked", "--stack", STACK, "--json", *FAST).json()
    (topic,) = [p for p in parked["places"] if p["place"] == "dead-letter-topic"]
    assert (topic["count"], topic["poison"], topic["archived"]) == (0, 0, 1), topic


@pytest.mark.kafka
def test_redrive_from_the_dead_letter_topic_in_phase_3_goes_to_the_job_queue(
    places: RecoveryStack, run: Run
) -> None:
    """In phases 1-4 the SQS path applies what reaches it; in phase 3 the Kafka consumer only
    verifies a job that also went to SQS, so the job queue is where it is applied."""
    places.dead_letter(envelope("job-k", routes=["sqs", "kafka"]).to_bytes(), "job-k", "boom")
    doc = _redrive(run, "dead-letter-topic", "--yes").json()
    assert doc["target"]["route"] == "sqs"
    assert _job_ids(places.drain("queue")) == ["job-k"]


@pytest.mark.kafka
def test_a_second_dead_letter_topic_redrive_finds_nothing_left(
    places: RecoveryStack, run: Run
) -> None:
    places.set_phase(5)
    places.dead_letter(envelope("job-k").to_bytes(), "job-k", "handler failed")
    assert len(_redrive(run, "dead-letter-topic", "--yes").json()["moved"]) == 1
    again = _redrive(run, "dead-letter-topic", "--yes").json()
    assert again["moved"] == []
    assert len(places.topic_records(places.topic)) == 1
    parked = run("parked", "--stack", STACK, "--json", *FAST).json()
    (topic,) = [p for p in parked["places"] if p["place"] == "dead-letter-topic"]
    assert (topic["count"], topic["redriven"]) == (0, 1)


@pytest.mark.kafka
@pytest.mark.usefixtures("ctrl_c_raises")
def test_an_interrupted_dead_letter_topic_redrive_continues_where_it_stopped(
    places: RecoveryStack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    places.set_phase(5)
    jobs = ["job-1", "job-2", "job-3"]
    for job in jobs:
        places.dead_letter(envelope(job).to_bytes(), job, "handler failed")
    with monkeypatch.context() as patch:
        _interrupt_before_send(patch, redrive.KafkaTarget, call=2)
        first = _redrive(run, "dead-letter-topic", "--yes")
    assert (first.code, len(first.json()["moved"])) == (130, 1)
    second = _redrive(run, "dead-letter-topic", "--yes")
    assert (second.code, len(second.json()["moved"])) == (0, 2)
    keys = Counter(k.decode() for k, _ in places.topic_records(places.topic) if k)
    assert keys == Counter(jobs), "each job moved once"


@pytest.mark.kafka
def test_a_job_id_selection_on_the_topic_says_what_a_later_redrive_moves_again(
    places: RecoveryStack, run: Run
) -> None:
    """Kafka records are not deleted: a record not selected stops the group's offset in its
    partition, so a selected record after it is moved again by the next full redrive."""
    places.set_phase(5)
    for job in ("job-1", "job-2"):
        places.dead_letter(envelope(job).to_bytes(), job, "handler failed", partition=0)
    doc = _redrive(run, "dead-letter-topic", "--yes", "--job-id", "job-2").json()
    assert [j["job_id"] for j in doc["moved"]] == ["job-2"]
    assert doc["moved_again_by_a_later_redrive"] == ["job-2"]
    rest = _redrive(run, "dead-letter-topic", "--yes").json()
    assert sorted(j["job_id"] for j in rest["moved"]) == ["job-1", "job-2"]


class _Terminal(io.StringIO):
    """An operator at a terminal who answers the confirmation with the given line."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "left"), [("n\n", 1, 1), ("y\n", 0, 0)])
def test_redrive_asks_before_moving_on_a_terminal(
    sqs_places: RecoveryStack,
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    code: int,
    left: int,
) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    sqs_places.capture_failed_job(failed_job_event(envelope("job-1").to_json(), exit_code=70))
    result = run("redrive", "--stack", STACK, "--source", "failed-jobs")
    assert result.code == code, result.err
    assert "Move 1 job(s) from the failed-jobs capture jobstream-dev-failed-jobs" in result.err
    assert sqs_places.depth("failed-jobs") == left
