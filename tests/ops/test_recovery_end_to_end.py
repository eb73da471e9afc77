"""Parked, listed, put back, applied once: the recovery commands with the real ``jobstream-worker``
on the local servers (moto's server, the Tansu broker, TLS-only PostgreSQL as RDS Proxy).

The SQS route is played the way the platform runs it: the pipe receives a message, submits one
AWS Batch job (here: runs ``jobstream-worker`` with the message in ``JOBSTREAM_JOB_MESSAGE``) and
deletes the message; a job that fails for good becomes a ``Batch Job State Change`` event that the
failed-jobs rule delivers to the capture queue (``failed_job_event``: the shape is built from the
DescribeJobs JobDetail, see its docstring). The handler fails until the operator fixes its cause
(a flag file), so a job parked before the fix is applied after the redrive, once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql

from jobstream.contract import env
from jobstream.contract.exits import RETRYABLE_EXITS, WorkerExit
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.publishers import KafkaPublisher
from ops.dead_letters import SqsHold
from rehearsal.servers import DUMMY_AWS_ENV, LocalPostgres
from tests.ops.recovery import REGION, STACK, RecoveryStack, envelope, failed_job_event
from tests.runtime.worker.conftest import REPO, WORKER
from tests.runtime.worker.handlers import FIXED_FLAG

pytestmark = [pytest.mark.moto_server, pytest.mark.postgres]

Run = Any
FAST = ("--kafka-timeout", "1")


@dataclass
class Worker:
    """``jobstream-worker`` with the environment the stack gives it, on the local servers."""

    environment: dict[str, str]
    postgres: LocalPostgres
    database: str
    fixed: Path

    def fix_the_cause(self) -> None:
        self.fixed.touch()

    def applied(self) -> dict[str, str]:
        info = self.postgres.conninfo.replace("dbname=postgres", f"dbname={self.database}")
        with psycopg.connect(info) as conn:
            try:
                rows = conn.execute("SELECT job_id, consumer FROM jobstream_ledger").fetchall()
            except psycopg.errors.UndefinedTable:
                return {}
        return {str(j): str(c) for j, c in rows}

    def results(self) -> dict[str, Any]:
        info = self.postgres.conninfo.replace("dbname=postgres", f"dbname={self.database}")
        with psycopg.connect(info) as conn:
            rows = conn.execute("SELECT job_id, result FROM jobstream_results").fetchall()
        return {str(j): r for j, r in rows}

    def batch_job(self, body: str, message_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WORKER)],
            env={**self.environment, env.JOB_MESSAGE: body, env.SQS_MESSAGE_ID: message_id},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def service(self, log: Path) -> subprocess.Popen[str]:
        with open(log, "w") as out:
            return subprocess.Popen(
                [str(WORKER)],
                env={**self.environment, env.CONSUMER: env.CONSUMER_KAFKA},
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )


@pytest.fixture
def worker(
    sqs_places: RecoveryStack, tls_postgres: LocalPostgres, tmp_path: Path
) -> Iterator[Worker]:
    database = f"r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(tls_postgres.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    stack_env = env.worker_environment(
        env.CONSUMER_SQS,
        stack=STACK,
        region=REGION,
        routing_parameter=sqs_places.names.routing_parameter,
        db_host="127.0.0.1",
        db_name=database,
        db_user=tls_postgres.user,
    )
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        **DUMMY_AWS_ENV,
        "AWS_ENDPOINT_URL": sqs_places.moto.url,
        **{k: str(v) for k, v in stack_env.items()},
        env.DB_PORT: str(tls_postgres.port),
        env.DB_SSLROOTCERT: str(tls_postgres.ca_file),
        env.HANDLER: "tests.runtime.worker.handlers:fails_until_fixed",
        FIXED_FLAG: str(tmp_path / "model-deployed"),
    }
    yield Worker(environment, tls_postgres, database, tmp_path / "model-deployed")
    with psycopg.connect(tls_postgres.conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def run_pipe(places: RecoveryStack, worker: Worker) -> list[int]:
    """The pipe, AWS Batch and the failed-jobs rule, for every message of the job queue: one job
    per message, the message deleted once the job is submitted, a job that fails for good
    captured with its environment. Returns the jobs' exit statuses."""
    sqs = places.client("sqs")
    statuses: list[int] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=places.urls["queue"], MaxNumberOfMessages=1, WaitTimeSeconds=1
        ).get("Messages", [])
        if not messages:
            return statuses
        message = messages[0]
        sqs.delete_message(QueueUrl=places.urls["queue"], ReceiptHandle=message["ReceiptHandle"])
        done = worker.batch_job(message["Body"], message["MessageId"])
        assert done.returncode not in RETRYABLE_EXITS, done.stderr
        statuses.append(done.returncode)
        if done.returncode != WorkerExit.OK:
            places.capture_failed_job(
                failed_job_event(
                    message["Body"], exit_code=done.returncode, message_id=message["MessageId"]
                )
            )


def place(result: Any, name: str) -> dict[str, Any]:
    (found,) = [p for p in result.json()["places"] if p["place"] == name]
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


# ---- the SQS route --------------------------------------------------------------------------------


def test_a_failing_job_and_a_poison_message_are_parked_listed_and_the_job_applied_once_after_the_fix(
    sqs_places: RecoveryStack, worker: Worker, run: Run
) -> None:
    sqs_places.publish(envelope("job-7", n=21).to_json(), "job-7")
    sqs_places.publish("{not json")
    assert sorted(run_pipe(sqs_places, worker)) == [WorkerExit.POISON, WorkerExit.HANDLER_FAILED]

    listed = place(run("parked", "--stack", STACK, "--json"), "failed-jobs")
    by_state = {j["state"]: j for j in listed["jobs"]}
    assert (listed["count"], listed["movable"], listed["poison"]) == (2, 1, 1)
    assert by_state["movable"]["job_id"] == "job-7"
    assert by_state["movable"]["reason"].startswith("handler failed on every attempt")
    assert by_state["poison"]["reason"].startswith("poison message (not a valid envelope)")

    worker.fix_the_cause()
    moved = run("redrive", "--stack", STACK, "--source", "failed-jobs", "--yes", "--json")
    assert [j["job_id"] for j in moved.json()["moved"]] == ["job-7"]
    assert [j["state"] for j in moved.json()["left_parked"]] == ["poison"]
    assert run_pipe(sqs_places, worker) == [WorkerExit.OK]
    assert worker.applied() == {"job-7": "sqs"}
    assert worker.results() == {"job-7": {"doubled": 42}}

    after = place(run("parked", "--stack", STACK, "--json"), "failed-jobs")
    assert (after["count"], after["poison"]) == (1, 1), "only the poison message stays parked"


def test_a_job_the_pipe_could_not_submit_is_redriven_from_the_dlq_and_applied_once(
    sqs_places: RecoveryStack, worker: Worker, run: Run
) -> None:
    worker.fix_the_cause()
    sqs_places.park_in_dlq(envelope("job-9").to_json(), "job-9")
    assert place(run("parked", "--stack", STACK, "--json"), "dlq")["jobs"][0]["job_id"] == "job-9"
    result = run("redrive", "--stack", STACK, "--source", "dlq", "--yes", "--json")
    assert result.code == 0, result.err
    assert run_pipe(sqs_places, worker) == [WorkerExit.OK]
    assert worker.applied() == {"job-9": "sqs"}
    assert sqs_places.depth("dlq") == 0


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_copy_redriven_twice_after_an_interruption_is_applied_once(
    sqs_places: RecoveryStack, worker: Worker, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between a copy accepted by the job queue and the delete of the parked message:
    the rerun copies it again; the ledger applies the job once."""
    sqs_places.publish(envelope("job-5").to_json(), "job-5")
    assert run_pipe(sqs_places, worker) == [WorkerExit.HANDLER_FAILED]
    worker.fix_the_cause()
    real_delete = SqsHold.delete

    def delete_after_ctrl_c(self: SqsHold, message_id: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real_delete(self, message_id)

    with monkeypatch.context() as patch:
        patch.setattr(SqsHold, "delete", delete_after_ctrl_c)
        first = run("redrive", "--stack", STACK, "--source", "failed-jobs", "--yes", "--json")
    assert first.code == 130
    assert any("was copied to the SQS job queue" in n for n in first.json()["notes"])
    second = run("redrive", "--stack", STACK, "--source", "failed-jobs", "--yes", "--json")
    assert [j["job_id"] for j in second.json()["moved"]] == ["job-5"]
    assert run_pipe(sqs_places, worker) == [WorkerExit.OK, WorkerExit.OK], "two copies ran"
    assert worker.applied() == {"job-5": "sqs"}
    assert sqs_places.depth("failed-jobs") == 0


# ---- the Kafka route ------------------------------------------------------------------------------


@pytest.mark.kafka
def test_a_job_the_kafka_consumer_dead_lettered_is_applied_once_after_redrive(
    places: RecoveryStack, worker: Worker, run: Run, tmp_path: Path
) -> None:
    places.set_phase(5)
    KafkaPublisher(producer_config(places.bootstrap)).publish(
        places.topic, envelope("job-k", n=5, routes=["kafka"])
    )
    poison = Producer({"bootstrap.servers": places.bootstrap})
    poison.produce(places.topic, key=b"job-p", value=b"{broken")
    assert poison.flush(10) == 0
    service = worker.service(tmp_path / "service.log")
    try:
        assert wait_for(lambda: len(places.topic_records(places.dead_letter_topic)) == 2), (
            "the consumer did not dead-letter the failing job and the poison message"
        )
        listed = place(run("parked", "--stack", STACK, "--json", *FAST), "dead-letter-topic")
        by_id = {j["job_id"]: j for j in listed["jobs"]}
        assert (by_id["job-k"]["state"], by_id["job-p"]["state"]) == ("movable", "poison")
        assert "the model for job job-k is not deployed yet" in by_id["job-k"]["reason"]

        worker.fix_the_cause()
        moved = run("redrive", "--stack", STACK, "--source", "dead-letter-topic", "--yes", "--json")
        assert moved.json()["target"]["route"] == "kafka"
        assert [j["job_id"] for j in moved.json()["left_parked"]] == ["job-p"]
        assert wait_for(lambda: "job-k" in worker.applied()), "the redriven job was not applied"
        again = run("redrive", "--stack", STACK, "--source", "dead-letter-topic", "--yes", "--json")
        assert again.json()["moved"] == [], "a rerun moves nothing twice"
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
    assert worker.applied() == {"job-k": "kafka"}
    assert worker.results() == {"job-k": {"doubled": 10}}
