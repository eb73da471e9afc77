"""The rehearsal's verdict: a lost job or a job applied twice must fail it."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from ops import rehearse
from ops.rehearse import Published, StepStats, rehearsal_ok, tally_jobs


def _steps() -> list[StepStats]:
    return [StepStats(step=1, phase=1), StepStats(step=2, phase=2)]


def test_job_without_a_result_row_is_counted_lost() -> None:
    steps = _steps()
    tally_jobs(steps, {"a": Published(1, ("sqs",), 0.0)}, {})
    assert (steps[1].lost, rehearsal_ok(steps)) == (1, False)


def test_job_with_two_result_rows_is_counted_applied_twice() -> None:
    steps = _steps()
    tally_jobs(steps, {"a": Published(0, ("sqs",), 0.0)}, {"a": (2, 0.1, "sqs")})
    assert (steps[0].applied_twice, rehearsal_ok(steps)) == (1, False)


def test_job_applied_once_counts_its_latency_for_the_applying_consumer() -> None:
    steps = _steps()
    per_step, overall = tally_jobs(
        steps, {"a": Published(0, ("sqs", "kafka"), 10.0)}, {"a": (1, 10.25, "kafka")}
    )
    assert rehearsal_ok(steps)
    assert per_step[0]["kafka"] == overall["kafka"] == [250.0]


@pytest.mark.parametrize(("ok", "status"), [(True, 0), (False, 1)])
def test_rehearse_command_exit_status_follows_the_verdict(
    monkeypatch: pytest.MonkeyPatch, ok: bool, status: int
) -> None:
    report: dict[str, Any] = {"ok": ok, "phases": [], "summary": {}, "events": []}
    monkeypatch.setattr(rehearse.Rehearsal, "run", lambda self: report)
    parser = argparse.ArgumentParser()
    rehearse.register(parser.add_subparsers())
    args = parser.parse_args(["rehearse", "--json"])
    assert args.handler(args) == status
