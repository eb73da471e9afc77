"""Releasing held SQS messages: ChangeMessageVisibilityBatch can fail some entries and still
answer HTTP 200, listing them under ``Failed`` ("you should check for batch errors even when
the call returns an HTTP status code of 200", Amazon SQS API Reference,
ChangeMessageVisibilityBatch). A message not released stays invisible until its visibility
timeout ends. A stubbed client (botocore's ``Stubber``) answers; nothing leaves the process."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from botocore.stub import Stubber

from ops.aws_clients import Aws, CannotTellError
from ops.dead_letters import SqsHold, from_dlq_message
from ops.redrive import SqsSource

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobstream-dev-jobs-dlq"


@pytest.fixture
def sqs(aws_env: None) -> Iterator[tuple[Any, Stubber]]:
    aws = Aws("us-east-1")
    with Stubber(aws.client("sqs")) as stubber:
        yield SimpleNamespace(aws=aws), stubber
        stubber.assert_no_pending_responses()


def _message(number: int) -> dict[str, Any]:
    return {
        "MessageId": f"m{number}",
        "ReceiptHandle": f"r{number}",
        "Body": json.dumps({"job_id": f"job-{number}"}),
        "Attributes": {"ApproximateReceiveCount": "1"},
    }


def _received(stubber: Stubber, *numbers: int) -> None:
    stubber.add_response("receive_message", {"Messages": [_message(n) for n in numbers]})
    stubber.add_response("receive_message", {"Messages": []})


def test_entries_sqs_failed_in_a_200_answer_are_counted_and_logged(
    sqs: tuple[Any, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    ctx, stubber = sqs
    _received(stubber, 1, 2)
    stubber.add_response(
        "change_message_visibility_batch",
        {
            "Successful": [{"Id": "0"}],
            "Failed": [
                {"Id": "1", "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "x"}
            ],
        },
    )
    with caplog.at_level(logging.WARNING, logger="ops.dead_letters"), SqsHold(ctx, URL) as hold:
        assert len(hold.read(10)) == 2
    assert hold.not_released == 1
    assert "ReceiptHandleIsInvalid" in caplog.text and "1 message(s)" in caplog.text


def test_a_failed_release_call_counts_every_entry_it_carried(sqs: tuple[Any, Stubber]) -> None:
    ctx, stubber = sqs
    _received(stubber, 1, 2, 3)
    stubber.add_client_error("change_message_visibility_batch", "InternalError", "", 500)
    with SqsHold(ctx, URL) as hold:
        hold.read(10)
    assert hold.not_released == 3


def test_a_release_that_succeeds_counts_nothing(sqs: tuple[Any, Stubber]) -> None:
    ctx, stubber = sqs
    _received(stubber, 1)
    stubber.add_response(
        "change_message_visibility_batch", {"Successful": [{"Id": "0"}], "Failed": []}
    )
    with SqsHold(ctx, URL) as hold:
        hold.read(10)
    assert hold.not_released == 0


def test_redrive_stops_before_its_plan_when_a_read_message_stays_invisible(
    sqs: tuple[Any, Stubber],
) -> None:
    """Otherwise the copy, receiving again, misses the invisible message, reports it as no
    longer parked and ends without moving its job."""
    ctx, stubber = sqs
    _received(stubber, 1, 2)
    stubber.add_response(
        "change_message_visibility_batch",
        {
            "Successful": [{"Id": "0"}],
            "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}],
        },
    )
    source = SqsSource(ctx, "jobstream-dev-jobs-dlq", URL, from_dlq_message)
    with pytest.raises(CannotTellError, match=r"1 message\(s\) .*\(nothing was moved\)"):
        source.read(10, kafka_timeout=1.0)


def test_parked_reports_the_messages_its_scan_left_invisible(sqs: tuple[Any, Stubber]) -> None:
    """A redrive started before they reappear would not see them."""
    from ops.parked import _sqs_place  # pyright: ignore[reportPrivateUsage]

    ctx, stubber = sqs
    ctx.now = dt.datetime.now(dt.UTC)
    stubber.add_response("get_queue_url", {"QueueUrl": URL})
    stubber.add_response(
        "get_queue_attributes",
        {
            "Attributes": {
                "ApproximateNumberOfMessages": "1",
                "ApproximateNumberOfMessagesNotVisible": "0",
                "ApproximateNumberOfMessagesDelayed": "0",
            }
        },
    )
    stubber.add_response("receive_message", {"Messages": [_message(1)]})
    stubber.add_response(
        "change_message_visibility_batch",
        {"Successful": [], "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"}]},
    )
    place = _sqs_place(ctx, "jobstream-dev-jobs-dlq", 10, from_dlq_message)
    assert place is not None and place["still_invisible"] == 1


def test_redrive_notes_the_messages_outside_its_plan_it_left_invisible(
    sqs: tuple[Any, Stubber],
) -> None:
    from ops.redrive import Outcome, Plan

    ctx, stubber = sqs
    _received(stubber, 1)  # job-1 is not in the plan: held, then released at the end
    stubber.add_response(
        "change_message_visibility_batch",
        {"Successful": [], "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"}]},
    )
    source = SqsSource(ctx, "jobstream-dev-jobs-dlq", URL, from_dlq_message)
    plan = Plan("dlq", source.name, target=cast(Any, None), to_move=[from_dlq_message(_message(9))])
    source.copy(plan, Outcome(), advance=lambda _n: None)
    assert any("1 message(s) of jobstream-dev-jobs-dlq left in place" in n for n in plan.notes)
