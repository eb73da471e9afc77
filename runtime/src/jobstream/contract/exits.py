"""Exit statuses of ``jobstream-worker`` (standard library only), shared with the stack.

The Batch job definition's retry strategy retries ``TEMPORARY`` (and the infrastructure causes
AWS Batch reports itself) and fails the job at once on every other non-zero status, because
rerunning a job the application rejected would only repeat the failure. A job that fails for good
is captured, with its message and this reason, by the stack's failed-jobs capture.
Values follow ``sysexits.h``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class WorkerExit(IntEnum):
    OK = 0
    """The job was applied, was already applied (duplicate), or was verified."""
    POISON = 65
    """EX_DATAERR: the message is not a valid envelope; no retry."""
    HANDLER_FAILED = 70
    """EX_SOFTWARE: the handler failed on every in-process attempt; no retry."""
    TEMPORARY = 75
    """EX_TEMPFAIL: a dependency (database, SSM, Kafka) failed; AWS Batch retries the job."""
    CONFIG = 78
    """EX_CONFIG: the environment is incomplete or the handler cannot be imported; no retry."""
    TERMINATED = 143
    """128 + SIGTERM, in Batch job mode: AWS Batch stopped the job (its attempt timeout, a
    TerminateJob, a Spot reclaim) and kills it 30 s later; nothing of the job was applied. Its
    retry is decided by the status reason (a Spot reclaim is retried), not by this code."""


RETRYABLE_EXITS: tuple[WorkerExit, ...] = (WorkerExit.TEMPORARY,)

EXIT_REASONS: Mapping[int, str] = {
    WorkerExit.OK: "ok",
    WorkerExit.POISON: "poison message (not a valid envelope)",
    WorkerExit.HANDLER_FAILED: "handler failed on every attempt",
    WorkerExit.TEMPORARY: "a dependency was unavailable (retried by AWS Batch)",
    WorkerExit.CONFIG: "worker configuration error (environment or handler)",
    WorkerExit.TERMINATED: "stopped by SIGTERM (Batch job timeout, termination or Spot reclaim)",
}


def reason_for_exit(code: int | None) -> str:
    """A readable reason for a worker exit status (signals show as 128 + n)."""
    if code is None:
        return "no exit status (the container did not start or was stopped)"
    if code in EXIT_REASONS:
        return EXIT_REASONS[code]
    if code > 128:
        return f"killed by signal {code - 128} (exit {code})"
    return f"exit status {code}"
