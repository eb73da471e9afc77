"""``ops.aws_clients.pages``: every page of a paginated AWS call through botocore's paginator,
each page's errors translated like any other call. A stubbed client (botocore's ``Stubber``)
answers, so no request leaves the process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ops.aws_clients import AccessDeniedError, CannotTellError, pages

QUEUE = "jobstream-dev-jobs"


@pytest.fixture
def batch(aws_env: None) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.session.Session().client("batch", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _jobs(*ids: str, token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {"jobSummaryList": [{"jobId": i, "jobName": i} for i in ids]}
    if token is not None:
        page["nextToken"] = token
    return page


def test_every_page_is_read_each_request_carrying_the_token_of_the_page_before(
    batch: tuple[Any, Stubber],
) -> None:
    client, stubber = batch
    asked = {"jobQueue": QUEUE, "jobStatus": "RUNNABLE"}
    stubber.add_response("list_jobs", _jobs("a", "b", token="t1"), asked)
    stubber.add_response("list_jobs", _jobs("c"), {**asked, "nextToken": "t1"})

    read = list(pages(client, "list_jobs", "batch:ListJobs", **asked))

    assert [j["jobId"] for p in read for j in p["jobSummaryList"]] == ["a", "b", "c"]


def test_a_service_that_hands_the_same_token_back_stops_with_a_clear_error_not_a_loop(
    batch: tuple[Any, Stubber],
) -> None:
    client, stubber = batch
    stubber.add_response("list_jobs", _jobs("a", token="same"))
    stubber.add_response("list_jobs", _jobs("b", token="same"))

    with pytest.raises(CannotTellError, match="batch:ListJobs"):
        list(pages(client, "list_jobs", "batch:ListJobs", jobQueue=QUEUE))


def test_an_error_on_a_later_page_is_translated_naming_the_action(
    batch: tuple[Any, Stubber],
) -> None:
    client, stubber = batch
    stubber.add_response("list_jobs", _jobs("a", token="t1"))
    stubber.add_client_error("list_jobs", "AccessDeniedException", "not allowed", 403)

    read: list[dict[str, Any]] = []
    with pytest.raises(AccessDeniedError, match="batch:ListJobs"):
        read.extend(pages(client, "list_jobs", "batch:ListJobs", jobQueue=QUEUE))
    assert len(read) == 1, "the first page is given before the second call fails"


def test_nothing_is_called_until_the_first_page_is_asked_for(
    batch: tuple[Any, Stubber],
) -> None:
    client, _stubber = batch
    pages(client, "list_jobs", "batch:ListJobs", jobQueue=QUEUE)  # no response queued: no call
