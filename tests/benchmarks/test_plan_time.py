"""The plan-time benchmark's accounting (the benchmark itself runs on demand only)."""

from __future__ import annotations

import itertools

import pytest

from benchmarks import plan_time


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread clock that moves one second at each reading."""
    ticks = itertools.count()
    monkeypatch.setattr(plan_time.time, "thread_time", lambda: float(next(ticks)))


@pytest.mark.usefixtures("clock")
def test_a_timed_call_inside_another_is_taken_out_of_the_outer_ones_time() -> None:
    timers = plan_time.Timers()
    mocks = timers.timed("mocks", lambda: None)  # 1 s: start and end are one reading apart
    sdk = timers.timed(None, lambda: mocks())  # 3 s, 1 of them the mocks'
    recording = timers.timed("recording", lambda: sdk())  # 5 s, 3 of them the SDK's

    recording()

    assert timers.seconds["mocks"] == 1.0
    assert timers.seconds["recording"] == 2.0, "the SDK's time (part None) is no part's"
    assert timers.seconds["program declarations"] == 0.0


@pytest.mark.usefixtures("clock")
def test_a_call_that_raises_is_still_charged_and_taken_out_of_the_call_around_it() -> None:
    timers = plan_time.Timers()

    def fail() -> None:
        raise RuntimeError("boom")

    failing = timers.timed("mocks", fail)  # 1 s

    def recording() -> None:
        with pytest.raises(RuntimeError):
            failing()

    timers.timed("recording", recording)()  # 3 s, 1 of them the failed call's

    assert timers.seconds["mocks"] == 1.0
    assert timers.seconds["recording"] == 2.0, "the failed call's frame was left on the stack"


def test_only_functions_of_this_repository_count_as_the_programs_callbacks() -> None:
    from infra import plan

    assert plan_time.is_repository_code(plan.cleanup_confirmed)
    assert not plan_time.is_repository_code(pytest.raises), "a library's function"
    assert not plan_time.is_repository_code("".join), "a builtin has no code object"
    assert not plan_time.is_repository_code(tuple)
