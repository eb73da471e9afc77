"""SIGTERM in Batch job mode (``jobstream.worker.stopping``): it abandons the job while the
outcome is unknown, and is ignored once it is known. The end-to-end case, a worker process
stopped mid-job, is in test_batch_mode.py."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from jobstream.contract.exits import WorkerExit
from jobstream.worker.stopping import Terminated, abandon_on_sigterm, outcome_known


@pytest.fixture(autouse=True)
def sigterm_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_sigterm_while_the_job_runs_raises_a_system_exit_of_143() -> None:
    """A SystemExit: no ``except Exception`` takes it for a failure, and psycopg cancels the
    query in progress on it (its connection's _INTERRUPTED)."""
    abandon_on_sigterm()
    with pytest.raises(Terminated) as stopped:
        signal.raise_signal(signal.SIGTERM)
    assert isinstance(stopped.value, SystemExit)
    assert stopped.value.code == WorkerExit.TERMINATED == 143


def test_sigterm_once_the_outcome_is_known_is_ignored() -> None:
    abandon_on_sigterm()
    outcome_known()
    signal.raise_signal(signal.SIGTERM)  # would raise Terminated, or end the process
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_knowing_the_outcome_leaves_a_handler_it_did_not_install_alone() -> None:
    def mine(_signum: int, _frame: object) -> None: ...

    signal.signal(signal.SIGTERM, mine)
    outcome_known()
    assert signal.getsignal(signal.SIGTERM) is mine
