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


# ---- the commands' reads that span pages ------------------------------------------------------


def _definition(revision: int) -> dict[str, Any]:
    name = "jobstream-dev-worker"
    return {
        "jobDefinitionName": name,
        "jobDefinitionArn": f"arn:aws:batch:us-east-1:123456789012:job-definition/{name}:{revision}",
        "revision": revision,
        "type": "container",
        "status": "ACTIVE",
    }


def test_adopt_takes_the_newest_active_job_definition_revision_from_any_page(
    aws_env: None,
) -> None:
    """DescribeJobDefinitions answers up to 100 definitions a call (its maxResults): a
    definition revised more often than that has its newest revision on a later page."""
    from ops.adoption.live import _job_definition  # pyright: ignore[reportPrivateUsage]
    from ops.aws_clients import Aws

    aws = Aws("us-east-1")
    asked = {"jobDefinitionName": "jobstream-dev-worker", "status": "ACTIVE"}
    with Stubber(aws.client("batch")) as stubber:
        first = [_definition(r) for r in range(1, 101)]
        stubber.add_response(
            "describe_job_definitions", {"jobDefinitions": first, "nextToken": "t1"}, asked
        )
        stubber.add_response(
            "describe_job_definitions",
            {"jobDefinitions": [_definition(101)]},
            {**asked, "nextToken": "t1"},
        )
        found = _job_definition(aws, "jobstream-dev-worker")
        stubber.assert_no_pending_responses()
    assert found["revision"] == 101


def test_adopt_reports_a_consumer_of_the_job_queue_listed_on_a_later_page(aws_env: None) -> None:
    """ListEventSourceMappings and ListPipes answer in pages (up to 100 a call): a consumer of
    the queue on a second page is still reported."""
    import argparse

    from infra.config import parse, read_stack_config
    from jobstream.contract.names import PROJECT
    from ops.adoption.live import Reader
    from ops.aws_clients import Aws

    queue_arn = "arn:aws:sqs:us-east-1:123456789012:jobstream-dev-jobs"
    cfg = parse(read_stack_config("dev"), stack="dev", project=PROJECT, source="test")
    aws = Aws("us-east-1")
    reader = Reader(argparse.Namespace(), cfg, aws)
    with Stubber(aws.client("lambda")) as mappings, Stubber(aws.client("pipes")) as pipes_:
        mappings.add_response(
            "list_event_source_mappings",
            {"EventSourceMappings": [], "NextMarker": "m1"},
            {"EventSourceArn": queue_arn},
        )
        mappings.add_response(
            "list_event_source_mappings",
            {"EventSourceMappings": []},
            {"EventSourceArn": queue_arn, "Marker": "m1"},
        )
        pipe = {"Name": "legacy-submitter", "CurrentState": "RUNNING", "Source": queue_arn}
        pipes_.add_response(
            "list_pipes", {"Pipes": [], "NextToken": "p1"}, {"SourcePrefix": queue_arn}
        )
        pipes_.add_response(
            "list_pipes", {"Pipes": [pipe]}, {"SourcePrefix": queue_arn, "NextToken": "p1"}
        )
        reader._consumers(queue_arn)  # pyright: ignore[reportPrivateUsage]
        mappings.assert_no_pending_responses()
        pipes_.assert_no_pending_responses()
    assert reader.result.consumers == ["EventBridge Pipe legacy-submitter (RUNNING)"]
