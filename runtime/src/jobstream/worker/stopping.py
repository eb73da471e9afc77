"""SIGTERM in Batch job mode: abandon the job while its outcome is unknown, ignore it after.

Kept apart from ``batch_job`` so that ``jobstream-worker`` installs the handler before it imports
anything heavy (start-up is part of the job's time too)."""

from __future__ import annotations

import signal

from jobstream.contract.exits import WorkerExit


class Terminated(SystemExit):
    """Raised by SIGTERM while a Batch job runs. A ``SystemExit`` (exit 143), so that no
    ``except Exception`` on the way (the handler's attempts, the ledger) takes it for a failure
    to retry or record, and so that psycopg cancels the query in progress, which it does for
    ``SystemExit`` and ``KeyboardInterrupt`` only."""

    def __init__(self) -> None:
        super().__init__(int(WorkerExit.TERMINATED))


def abandon_on_sigterm() -> None:
    """Until ``run_batch_job`` knows the job's outcome, SIGTERM abandons the job at once. AWS
    Batch sends it on the attempt timeout or a termination and SIGKILL 30 s later (AWS Batch
    User Guide, "Job timeouts"); as the container's PID 1 (the image's entrypoint) the worker
    would otherwise ignore it, the kernel giving PID 1 no default action: the job would die by
    SIGKILL, unexplained."""

    signal.signal(signal.SIGTERM, _abandon)


def _abandon(_signum: int, _frame: object) -> None:
    raise Terminated


def outcome_known() -> None:
    """Once the job's outcome is known (applied, failed for good, or a dependency failure to
    retry), a SIGTERM no longer abandons anything: it is ignored while the worker closes the
    ledger, logs, flushes its metrics and exits with that outcome."""
    if signal.getsignal(signal.SIGTERM) is _abandon:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
