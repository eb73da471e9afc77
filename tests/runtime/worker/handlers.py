"""Handlers the worker tests start ``jobstream-worker`` with (``JOBSTREAM_HANDLER``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobstream.messaging.envelope import Envelope


def double(envelope: Envelope) -> Mapping[str, Any]:
    return {"doubled": int(envelope.payload["n"]) * 2}


def broken(envelope: Envelope) -> Mapping[str, Any]:
    raise ValueError(f"cannot score job {envelope.job_id}")


def not_callable() -> None:  # pragma: no cover - imported, never called
    pass


NOT_A_FUNCTION = 42
