"""The rehearsal's ML service: a handler and a result writer (``JOBSTREAM_HANDLER`` /
``JOBSTREAM_RESULT_WRITER``, what a team's image sets), with the faults the rehearsal injects.

A job's ``payload["fault"]`` (chosen by the producer, recorded in its journal) says what happens:

- ``intermittent``: the handler fails on its first call in a process, then succeeds (the
  worker's in-process attempts absorb it);
- ``permanent``: the handler fails until the operator has fixed the cause for that job (the file
  ``fixed-<job id>`` in the control directory), so the job is parked, then redriven and applied;
- ``kill-in-tx``: the process kills itself with SIGKILL inside the ledger transaction, once per
  job (the Batch stand-in records a SIGKILLed job as a Spot interruption, so AWS Batch's retry
  strategy applies as it would to a reclaimed task);
- ``kill-after-commit``: the same, right after the ledger transaction committed and before the
  message is acknowledged (the Kafka offset commit, or the Batch job's exit).

The results go to ``rehearsal_results`` without a unique key, inside the ledger's transaction,
so a job applied twice shows up as two rows.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobstream.messaging.envelope import Envelope
from jobstream.messaging.ledger import SqlCursor

CONTROL_DIR = "JOBSTREAM_REHEARSAL_CONTROL"
"""The control directory (a variable of the rehearsal's image, not of the stack)."""

RESULTS_DDL = (
    "CREATE TABLE IF NOT EXISTS rehearsal_results (job_id TEXT NOT NULL, consumer TEXT NOT NULL, "
    "published_at DOUBLE PRECISION NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)

_seen: set[str] = set()


def _control() -> Path:
    return Path(os.environ.get(CONTROL_DIR, "/nonexistent"))


def _first_time(marker: str) -> bool:
    """True once per marker across every process (an exclusive create in the control dir)."""
    try:
        fd = os.open(_control() / marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def square(envelope: Envelope) -> Mapping[str, Any]:
    fault = envelope.payload.get("fault")
    if fault == "intermittent" and envelope.job_id not in _seen:
        _seen.add(envelope.job_id)
        raise TimeoutError(f"job {envelope.job_id}: model busy (intermittent)")
    if fault == "permanent" and not (_control() / f"fixed-{envelope.job_id}").exists():
        raise ValueError(f"job {envelope.job_id}: cannot be scored (permanent, until fixed)")
    n = int(envelope.payload["n"])
    return {"square": n * n, "published_at": envelope.published_at.timestamp()}


def record_result(cur: SqlCursor, job_id: str, result: Mapping[str, Any]) -> None:
    consumer = os.environ.get("JOBSTREAM_CONSUMER", "?")
    cur.execute(
        "INSERT INTO rehearsal_results (job_id, consumer, published_at, applied_at) "
        "VALUES (%s, %s, %s, %s)",
        (job_id, consumer, float(result.get("published_at", 0.0)), time.time()),
    )
    fault = _fault_of(job_id)
    if fault == "kill-in-tx" and _first_time(f"killed-{job_id}"):
        _die("in-tx")
    if fault == "kill-after-commit" and _first_time(f"killed-{job_id}"):
        _die_after_commit(cur)


_faults: dict[str, str] = {}


def _fault_of(job_id: str) -> str | None:
    return _faults.get(job_id)


def remember_fault(envelope: Envelope) -> None:
    """The writer sees only the job id and the result: the handler wrapper notes the fault."""
    fault = envelope.payload.get("fault")
    if isinstance(fault, str):
        _faults[envelope.job_id] = fault


def handle(envelope: Envelope) -> Mapping[str, Any]:
    """``JOBSTREAM_HANDLER=rehearsal.handlers:handle``."""
    remember_fault(envelope)
    return square(envelope)


def _die(moment: str) -> None:
    (_control() / f"kill-{os.getpid()}").write_text(moment)
    os.kill(os.getpid(), signal.SIGKILL)


def _die_after_commit(cur: Any) -> None:
    """Kill this process right after the ledger transaction commits (the cursor's connection
    leaves the transaction): before the Kafka offset commit or the Batch job's exit."""
    connection = cur.connection

    def watch() -> None:
        import psycopg.pq

        while connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            time.sleep(0.0005)
        _die("after-commit")

    threading.Thread(target=watch, daemon=True).start()
