"""Handlers the worker tests start ``jobstream-worker`` with (``JOBSTREAM_HANDLER``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobstream.messaging.envelope import Envelope


def double(envelope: Envelope) -> Mapping[str, Any]:
    return {"doubled": int(envelope.payload["n"]) * 2}


def broken(envelope: Envelope) -> Mapping[str, Any]:
    raise ValueError(f"cannot score job {envelope.job_id}")


FIXED_FLAG = "JOBSTREAM_TEST_FIXED_FLAG"
"""A file path: ``fails_until_fixed`` fails every job until that file exists."""


def fails_until_fixed(envelope: Envelope) -> Mapping[str, Any]:
    """A handler with a cause an operator fixes (a model not deployed yet, say): it fails until
    the file named by ``JOBSTREAM_TEST_FIXED_FLAG`` exists, then works as ``double``."""
    flag = os.environ.get(FIXED_FLAG, "")
    if not flag or not Path(flag).exists():
        raise RuntimeError(f"the model for job {envelope.job_id} is not deployed yet")
    return double(envelope)


STARTED_FLAG = "JOBSTREAM_TEST_STARTED_FLAG"
"""A file path: ``slow`` creates it when it starts, then works for a minute."""


def slow(envelope: Envelope) -> Mapping[str, Any]:
    """A job that runs long enough to be stopped: it says it started (``STARTED_FLAG``)."""
    import time

    Path(os.environ[STARTED_FLAG]).touch()
    time.sleep(60)
    return double(envelope)


def not_callable() -> None:  # pragma: no cover - imported, never called
    pass


NOT_A_FUNCTION = 42
