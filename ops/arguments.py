"""Argument types the commands share: each rejects what it cannot use with a message argparse
prints as a usage error (exit 2; one JSON object with ``--json``). Light: argparse and math
(``config_key`` reads the stack config's key table when its option is given)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_number(text: str) -> float:
    """A finite number above 0 (a window in hours, a duration)."""
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
    return value


def non_negative_number(text: str) -> float:
    """A finite number, 0 or more (an assumed volume)."""
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number, 0 or more")
    return value


def ratio(text: str) -> float:
    """A share from 0 to 1 (an error rate)."""
    value = _number(text)
    if not 0 <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} must be a ratio from 0 to 1 (e.g. 0.01)")
    return value


def positive_ratio(text: str) -> float:
    """A share above 0, at most 1 (a minimum ratio that 0 would make no gate at all)."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a ratio above 0, at most 1 (e.g. 0.99)")
    return value


def config_key(name: str) -> Callable[[str], Any]:
    """The type of an option that stands in for stack config key ``jobstream:<name>`` for one
    run: the key's own parser, so the option takes what the key takes (``infra/config``), and
    0 or a negative count cannot slip through where the key refuses it."""

    def parse(text: str) -> Any:
        from infra.config import KEYS_BY_NAME
        from infra.config.keys import InvalidValueError

        try:
            return KEYS_BY_NAME[name].parse(text)
        except InvalidValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r} {error} (as jobstream:{name})") from None

    parse.__name__ = name  # argparse names the type in some of its messages
    return parse


KAFKA_TIMEOUT_RANGE_SECONDS = (0.001, 2_147_483.647)
"""What librdkafka's millisecond timeouts can hold: ``message.timeout.ms`` (alias
``delivery.timeout.ms``) is "0 .. 2147483647" and "A time of 0 is infinite"
(https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)."""


def kafka_timeout_seconds(text: str) -> float:
    """Seconds for a librdkafka timeout given in milliseconds: 1 ms to its 32-bit maximum (0
    would mean waiting for ever, and a copy Kafka never accepts would hold the command)."""
    value = _number(text)
    low, high = KAFKA_TIMEOUT_RANGE_SECONDS
    if not math.isfinite(value) or not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a number of seconds from {low:g} to {high:.3f}"
        )
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_int(text: str) -> int:
    """A whole number, 1 or more (a count, a limit, seconds)."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def tcp_port(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value
