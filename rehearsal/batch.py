"""A local stand-in for the EventBridge Pipe and AWS Batch, with their documented semantics.

- The pipe long-polls the SQS job queue (batch size from the plan), submits one job per message
  and deletes the message once the submit was accepted ("When your pipe successfully processes a
  batch, EventBridge deletes its messages from the queue", EventBridge Pipes, Amazon SQS
  source). Its container overrides are the plan's, with the dynamic paths resolved against the
  SQS record.
- AWS Batch runs each job's attempt as its own OS process of ``jobstream-worker`` (forked by
  ``rehearsal.zygote``) with the job definition's environment plus the overrides, at most as
  many at once as the compute environment's vCPUs allow, and decides after a failed attempt
  with the job definition's own ``attempts`` and ``evaluateOnExit`` rules (first match decides,
  no match retries). A process killed by SIGKILL is recorded as a Spot interruption (the status
  reason AWS Batch gives a reclaimed task for the plan's compute type).
- A job that fails for good reaches FAILED, and its ``Batch Job State Change`` event, shaped as
  ``DescribeJobs`` returns a job, is put on the local EventBridge: the stack's failed-jobs rule
  (created from the plan) delivers it to the failed-jobs queue, as in AWS.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rehearsal.stack_model import StackModel

SPOT_REASONS = {
    "FARGATE_SPOT": "Your Spot Task was interrupted.",
    "SPOT": "Host EC2 (instance i-0123456789abcdef0) terminated.",
}
EXITED = "Essential container in task exited"


class Zygote:
    """The parent side of ``rehearsal.zygote``: start attempts, learn their pid and exit."""

    def __init__(self, environ: Mapping[str, str], job_log: Path | None = None) -> None:
        env = dict(environ)
        if job_log is not None:
            env["JOBSTREAM_REHEARSAL_JOB_LOG"] = str(job_log)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rehearsal.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline()
        if '"ready"' not in ready:
            raise RuntimeError(f"the Batch job fork server did not start: {ready!r}")
        self._lock = threading.Lock()
        self._pids: dict[str, int] = {}
        self._started: dict[str, threading.Event] = {}
        self._on_exit: dict[str, Callable[[int, int], None]] = {}
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    def start(
        self, attempt_id: str, environ: Mapping[str, str], on_exit: Callable[[int, int], None]
    ) -> int:
        """Fork an attempt; ``on_exit(exit status, pid)`` runs when it ends. Returns its pid."""
        started = threading.Event()
        with self._lock:
            self._started[attempt_id] = started
            self._on_exit[attempt_id] = on_exit
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"id": attempt_id, "env": dict(environ)}) + "\n")
            self._proc.stdin.flush()
        started.wait(30)
        with self._lock:
            return self._pids.get(attempt_id, -1)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            message = json.loads(line)
            attempt = message["id"]
            if "pid" in message:
                with self._lock:
                    self._pids[attempt] = int(message["pid"])
                    event = self._started.pop(attempt, None)
                if event is not None:
                    event.set()
            elif "exit" in message:
                with self._lock:
                    callback = self._on_exit.pop(attempt, None)
                    pid = self._pids.pop(attempt, -1)
                if callback is not None:
                    callback(int(message["exit"]), pid)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write("\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()


@dataclass
class BatchJob:
    job_id: str
    message_id: str
    body: str
    environment: dict[str, str]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    pid: int | None = None
    started_at: float = 0.0


@dataclass
class BatchCounters:
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0
    retried: int = 0
    interrupted: int = 0


class BatchStandIn:
    """The pipe and the Batch job queue; ``running`` / ``enabled`` mirror the phase table."""

    def __init__(
        self,
        model: StackModel,
        *,
        sqs: Any,
        events: Any,
        queue_url: str,
        job_environment: Callable[[Mapping[str, str]], dict[str, str]],
        zygote: Zygote,
        control_dir: Path,
        compute_type: str,
    ) -> None:
        self.model = model
        self._sqs, self._events, self._queue_url = sqs, events, queue_url
        self._job_environment = job_environment
        self._zygote = zygote
        self._control = control_dir
        self._spot_reason = SPOT_REASONS.get(compute_type)
        self.counters = BatchCounters()
        self.failed_jobs: list[BatchJob] = []
        self._lock = threading.Lock()
        self._pending: deque[BatchJob] = deque()
        self._running: dict[str, BatchJob] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sequence = itertools.count(1)
        self._threads = [
            threading.Thread(target=self._pipe, name="pipe", daemon=True),
            threading.Thread(target=self._scheduler, name="batch", daemon=True),
        ]

    def start(self) -> BatchStandIn:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(10)

    # ---- the pipe --------------------------------------------------------------------------

    def _pipe(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=min(10, self.model.pipe_batch_size),
                    WaitTimeSeconds=1,
                ).get("Messages", [])
            except Exception:
                time.sleep(0.5)
                continue
            for message in got:
                job = self._submit(message)
                if job is not None:
                    self._sqs.delete_message(
                        QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )

    def _submit(self, message: Mapping[str, Any]) -> BatchJob | None:
        record = {"body": message.get("Body", ""), "messageId": message["MessageId"]}
        overrides: dict[str, str] = {}
        for name, path in self.model.pipe_overrides.items():
            field_name = path.removeprefix("$.")
            overrides[name] = str(record.get(field_name, ""))
        job = BatchJob(
            job_id=f"batch-{next(self._sequence):06d}-{uuid.uuid4().hex[:6]}",
            message_id=record["messageId"],
            body=record["body"],
            environment=self._job_environment(overrides),
        )
        with self._lock:
            self._pending.append(job)
            self.counters.submitted += 1
        self._wake.set()
        return job

    # ---- AWS Batch -------------------------------------------------------------------------

    def _scheduler(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._pending or len(self._running) >= self.model.max_concurrent_jobs:
                        break
                    job = self._pending.popleft()
                    self._running[job.job_id] = job
                self._run_attempt(job)

    def _run_attempt(self, job: BatchJob) -> None:
        attempt = len(job.attempts) + 1
        environ = {
            **job.environment,
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt),
            "AWS_BATCH_JQ_NAME": self.model.batch_job_queue,
        }
        job.started_at = time.time()
        with self._lock:
            self.counters.attempts += 1
        pid = self._zygote.start(
            f"{job.job_id}#{attempt}",
            environ,
            lambda code, pid: self._finished(job, environ, code, pid),
        )
        with self._lock:
            if job.job_id in self._running:
                job.pid = pid

    def _finished(self, job: BatchJob, environ: Mapping[str, str], code: int, pid: int) -> None:
        killed = code == 128 + signal.SIGKILL
        (self._control / f"kill-{pid}").unlink(missing_ok=True)
        interrupted = killed and self._spot_reason is not None
        status_reason = self._spot_reason if interrupted else EXITED
        assert status_reason is not None
        job.attempts.append(
            {
                "container": {"exitCode": code, "reason": "", "logStreamName": job.job_id},
                "startedAt": int(job.started_at * 1000),
                "stoppedAt": int(time.time() * 1000),
                "statusReason": status_reason,
            }
        )
        with self._lock:
            self._running.pop(job.job_id, None)
            job.pid = None
            if interrupted:
                self.counters.interrupted += 1
        if code == 0:
            with self._lock:
                self.counters.succeeded += 1
        elif len(job.attempts) < self.model.retry.attempts and self.model.retry.retries(
            status_reason=status_reason, reason="", exit_code=code
        ):
            with self._lock:
                self.counters.retried += 1
                self._pending.append(job)
        else:
            self._fail(job, environ, status_reason, code)
        self._wake.set()

    def _fail(
        self, job: BatchJob, environ: Mapping[str, str], status_reason: str, code: int
    ) -> None:
        """FAILED: the Batch Job State Change event, as AWS Batch emits it (detail = the job as
        DescribeJobs returns it), onto the local EventBridge, where the plan's rule routes it."""
        detail = {
            "jobArn": f"arn:aws:batch:{self.model.region}:123456789012:job/{job.job_id}",
            "jobName": self.model.pipe_job_name,
            "jobId": job.job_id,
            "jobQueue": self.model.batch_job_queue_arn,
            "status": "FAILED",
            "statusReason": status_reason,
            "attempts": job.attempts,
            "jobDefinition": f"arn:aws:batch:{self.model.region}:123456789012:job-definition/"
            f"{self.model.job_definition}:1",
            "container": {
                "environment": [{"name": k, "value": v} for k, v in sorted(environ.items())
                                if k.startswith(("JOBSTREAM_", "AWS_BATCH_"))],
                "exitCode": code,
            },
        }  # fmt: skip
        self._events.put_events(
            Entries=[
                {
                    "Source": "aws.batch",
                    "DetailType": "Batch Job State Change",
                    "Detail": json.dumps(detail),
                }
            ]
        )
        with self._lock:
            self.counters.failed += 1
            self.failed_jobs.append(job)

    # ---- faults and state -------------------------------------------------------------------

    def interrupt_random(self, rng: Any, *, wait_seconds: float = 0.0) -> str | None:
        """SIGKILL a running attempt (a Spot reclaim): the first moment within ``wait_seconds``
        that one runs (attempts last tens of milliseconds here, so a single look often finds
        none); its job id, or None when none ran."""
        deadline = time.monotonic() + wait_seconds
        while True:
            with self._lock:
                running = [j for j in self._running.values() if j.pid and j.pid > 0]
            if running:
                job = rng.choice(running)
                try:
                    os.kill(job.pid or -1, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it ended between the look and the kill: look again
                else:
                    return job.job_id
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def busy(self) -> int:
        """Jobs submitted and not finished (SUBMITTED ... RUNNING)."""
        with self._lock:
            return len(self._pending) + len(self._running)
