"""``ops.kafka_log``: librdkafka's repeated lines while brokers are unreachable, held back."""

from __future__ import annotations

import logging

from ops.kafka_log import LOGGER_NAME, RepeatFilter, kafka_logger

REFUSED = (
    "FAIL [rdkafka#producer-1] [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to "
    "ipv4#127.0.0.1:1 failed: Connection refused (after {ms}ms in state CONNECT)"
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord(LOGGER_NAME, logging.ERROR, __file__, 1, message, None, None)


def test_a_line_repeated_within_the_window_is_shown_once() -> None:
    clock = Clock()
    repeats = RepeatFilter(window=30, clock=clock)
    shown = []
    for attempt in range(200):  # 7 a second, as librdkafka reconnects to a refused address
        clock.now = attempt / 7
        line = record(REFUSED.format(ms=attempt % 2))  # the tail varies between repeats
        if repeats.filter(line):
            shown.append(line.getMessage())
    assert shown == [REFUSED.format(ms=0)]


def test_after_the_window_the_next_repeat_says_how_many_were_held_back() -> None:
    clock = Clock()
    repeats = RepeatFilter(window=30, clock=clock)
    assert repeats.filter(record(REFUSED.format(ms=0)))
    for second in range(1, 30):
        clock.now = second
        assert not repeats.filter(record(REFUSED.format(ms=0)))
    clock.now = 30
    line = record(REFUSED.format(ms=1))
    assert repeats.filter(line)
    assert line.getMessage() == REFUSED.format(ms=1) + " (29 like it held back in the last 30 s)"


def test_the_same_failure_from_a_replacement_client_is_held_back_too() -> None:
    repeats = RepeatFilter(window=30, clock=Clock())
    assert repeats.filter(record(REFUSED.format(ms=0)))
    assert not repeats.filter(record(REFUSED.replace("producer-1", "producer-2").format(ms=0)))


def test_lines_about_different_brokers_are_each_shown() -> None:
    repeats = RepeatFilter(window=30, clock=Clock())
    other = REFUSED.replace("127.0.0.1:1", "127.0.0.1:2")
    assert repeats.filter(record(REFUSED.format(ms=0)))
    assert repeats.filter(record(other.format(ms=0)))


def test_the_logger_gets_one_filter_however_many_clients_ask_for_it() -> None:
    kafka_logger()
    logger = kafka_logger()
    assert logger.name == LOGGER_NAME
    assert sum(isinstance(f, RepeatFilter) for f in logger.filters) == 1
