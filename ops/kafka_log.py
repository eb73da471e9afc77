"""The logger the operator commands give librdkafka (``parked``, ``redrive``, ``replay``).

While brokers are unreachable librdkafka logs the same ``FAIL ... Connection refused`` line on
every reconnect attempt (7 a second against one refused address here; a 30 s ``replay`` printed
~200 of them over its own report). The first of each distinct line is what an operator needs;
the repeats are counted and said once a window, on the next line that gets through.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

LOGGER_NAME = "jobstream.ops.kafka"
# What differs between repeats of one failure: the tail ("(after 0ms in state CONNECT)",
# "(after 1ms in state CONNECT, 1 identical error(s) suppressed)") and the client's number
# ("[rdkafka#producer-5]": replay starts a new producer after one that failed fatally).
_VARYING_TAIL = re.compile(r"\s*\([^()]*\)$")
_CLIENT_NUMBER = re.compile(r"(\[rdkafka#[a-z]+)-\d+\]")
REPEAT_WINDOW_SECONDS = 30.0


class RepeatFilter(logging.Filter):
    """Lets a message through the first time, then once every ``window`` seconds, with how many
    of the same were held back since (the same: equal but for a trailing parenthesis and the
    client's number)."""

    def __init__(
        self, window: float = REPEAT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last shown at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = _CLIENT_NUMBER.sub(r"\1]", _VARYING_TAIL.sub("", message))
        now = self._clock()
        shown_at, held = self._seen.get(key, (None, 0))
        if shown_at is not None and now - shown_at < self._window:
            self._seen[key] = (shown_at, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{message} ({held} like it held back in the last "
            record.msg += f"{self._window:g} s)"
            record.args = None
        return True


def kafka_logger() -> logging.Logger:
    """The librdkafka logger of the operator commands, with repeats held back (one filter, added
    once however many clients a command opens)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
