"""``jobstream-worker`` in Batch job mode, run as its own process the way AWS Batch runs it: one
SQS message in ``JOBSTREAM_JOB_MESSAGE``, processed through the ledger, an exit status the job
definition's retry strategy understands (``jobstream.contract.exits``)."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import pytest

from jobstream.contract import env
from jobstream.contract.exits import WorkerExit
from jobstream.messaging.envelope import Envelope
from tests.runtime.worker import handlers
from tests.runtime.worker.conftest import STACK, WorkerRig

pytestmark = [pytest.mark.moto_server, pytest.mark.postgres]


def message(job_id: str = "job-1", n: int = 4) -> str:
    return Envelope.new("double", {"n": n}, job_id=job_id).with_routes(["sqs"]).to_json()


def job(rig: WorkerRig, body: str, **extra: str) -> tuple[int, str]:
    done = rig.run({env.JOB_MESSAGE: body, env.SQS_MESSAGE_ID: "m-1", **extra})
    return done.returncode, done.stderr


def test_the_job_is_applied_and_the_worker_exits_0(worker_rig: WorkerRig) -> None:
    code, log = job(worker_rig, message())
    assert code == WorkerExit.OK, log
    assert worker_rig.applied() == {"job-1": "sqs"}
    ((result,),) = worker_rig.sql("SELECT result FROM jobstream_results WHERE job_id = 'job-1'")
    assert result == {"doubled": 8}
    assert "job job-1 (SQS message m-1): applied" in log


def test_sigterm_abandons_the_job_at_once_with_exit_143_and_applies_nothing(
    worker_rig: WorkerRig, tmp_path: Path
) -> None:
    """AWS Batch sends SIGTERM on the attempt timeout or a termination, then SIGKILL 30 s later
    (AWS Batch User Guide, "Job timeouts"). In the container the worker is PID 1, which the
    kernel gives no default action for SIGTERM: without a handler it would wait for SIGKILL.
    Here the worker is not PID 1 (its default would be death by signal, -15), so the test checks
    the handler's own exit: 143, said in the log, nothing of the job applied."""
    started = tmp_path / "started"
    worker = worker_rig.start(
        {
            env.JOB_MESSAGE: message(),
            env.SQS_MESSAGE_ID: "m-1",
            env.HANDLER: "tests.runtime.worker.handlers:slow",
            handlers.STARTED_FLAG: str(started),
        }
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        _out, log = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == WorkerExit.TERMINATED == 143, log
    assert "SIGTERM: AWS Batch stopped this job" in log
    assert worker_rig.applied() == {}


def test_a_second_attempt_of_an_applied_job_is_a_duplicate_and_exits_0(
    worker_rig: WorkerRig,
) -> None:
    job(worker_rig, message())
    code, log = job(worker_rig, message())
    assert code == WorkerExit.OK, log
    assert "duplicate" in log
    assert worker_rig.applied() == {"job-1": "sqs"}


def test_a_poison_message_exits_65_without_a_retry_and_without_a_traceback(
    worker_rig: WorkerRig,
) -> None:
    code, log = job(worker_rig, "{not json")
    assert code == WorkerExit.POISON == 65, log
    assert "not a valid envelope" in log
    assert "Traceback" not in log


def test_a_handler_failing_every_attempt_exits_70(worker_rig: WorkerRig) -> None:
    code, log = job(worker_rig, message(), **{env.HANDLER: "tests.runtime.worker.handlers:broken"})
    assert code == WorkerExit.HANDLER_FAILED == 70, log
    assert "cannot score job job-1" in log
    assert worker_rig.applied() == {}
    assert "Traceback" not in log


def test_an_unreachable_database_exits_75_so_batch_retries(worker_rig: WorkerRig) -> None:
    code, log = job(worker_rig, message(), **{env.DB_PORT: "1"})
    assert code == WorkerExit.TEMPORARY == 75, log
    assert log.count("\n") <= 3, f"more than one clear line: {log}"
    assert "cannot reach database" in log
    assert "Traceback" not in log


def test_a_missing_routing_parameter_exits_75(worker_rig: WorkerRig) -> None:
    code, log = job(worker_rig, message(), **{env.ROUTING_PARAMETER: "/jobstream/nope/routing"})
    assert code == WorkerExit.TEMPORARY, log
    assert "cannot reach routing parameter /jobstream/nope/routing" in log


def test_a_database_refusing_plain_text_is_reached_over_verified_tls(
    worker_rig: WorkerRig,
) -> None:
    """The local server rejects non-TLS connections; a wrong CA fails verification."""
    code, _ = job(worker_rig, message())
    assert code == WorkerExit.OK
    code, log = job(
        worker_rig, message("job-2"), **{env.DB_SSLROOTCERT: "/etc/ssl/certs/ca-certificates.crt"}
    )
    assert code == WorkerExit.TEMPORARY, log
    assert "certificate verify failed" in log


def test_a_missing_variable_exits_78_naming_it(worker_rig: WorkerRig) -> None:
    rig_env = {k: v for k, v in worker_rig.env.items() if k != env.DB_HOST}
    done = worker_rig.__class__(
        worker_rig.moto, worker_rig.postgres, worker_rig.database, env=rig_env
    ).run({env.JOB_MESSAGE: message()})
    assert done.returncode == WorkerExit.CONFIG == 78, done.stderr
    assert "JOBSTREAM_DB_HOST = <unset>: is required" in done.stderr


def test_a_handler_that_cannot_be_imported_exits_78(worker_rig: WorkerRig) -> None:
    code, log = job(worker_rig, message(), **{env.HANDLER: "no_such_module:score"})
    assert code == WorkerExit.CONFIG, log
    assert "module 'no_such_module' cannot be imported" in log


def test_phase_4_drains_a_job_that_reached_sqs(worker_rig: WorkerRig) -> None:
    worker_rig.topic, worker_rig.bootstrap = "jobs", "127.0.0.1:9"
    worker_rig.set_phase(4)
    code, log = job(worker_rig, message())
    assert code == WorkerExit.OK, log
    assert worker_rig.applied() == {"job-1": "sqs"}


def test_the_job_metrics_reach_cloudwatch_with_the_stack_dimension(worker_rig: WorkerRig) -> None:
    job(worker_rig, message())
    cw = worker_rig.client("cloudwatch")
    now = dt.datetime.now(dt.UTC)
    stats = cw.get_metric_statistics(
        Namespace="Jobstream",
        MetricName="JobsApplied",
        Dimensions=[{"Name": "Stack", "Value": STACK}, {"Name": "Consumer", "Value": "sqs"}],
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 1
