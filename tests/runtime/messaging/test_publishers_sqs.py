from __future__ import annotations

from typing import Any

import pytest

from jobstream.messaging.envelope import Envelope
from jobstream.messaging.metrics import InMemoryMetrics
from jobstream.messaging.publishers import PublishError, SqsPublisher
from tests.runtime.messaging.conftest import Aws

pytestmark = pytest.mark.moto_server


def _jobs(n: int, *, size: int = 10) -> list[Envelope]:
    return [
        Envelope.new("embed", {"text": "x" * size}, job_id=f"job-{i}").with_routes(["sqs"])
        for i in range(n)
    ]


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return seen
        seen += got


def test_published_message_carries_the_job_id_attribute(aws_local: Aws) -> None:
    sqs = aws_local.client("sqs")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    (job,) = _jobs(1)
    SqsPublisher(sqs).publish(url, job)
    (msg,) = _drain(sqs, url)
    assert msg["MessageAttributes"]["job_id"]["StringValue"] == "job-0"
    assert Envelope.from_json(msg["Body"]) == job


def test_batch_larger_than_ten_is_sent_in_chunks_and_all_arrive(aws_local: Aws) -> None:
    sqs = aws_local.client("sqs")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    metrics = InMemoryMetrics()
    SqsPublisher(sqs, metrics=metrics).publish_batch(url, _jobs(25))
    ids = {Envelope.from_json(m["Body"]).job_id for m in _drain(sqs, url)}
    assert ids == {f"job-{i}" for i in range(25)}
    assert metrics.total("JobsPublished", Route="sqs") == 25


def test_chunk_refused_by_sqs_is_reported_and_other_chunks_still_arrive(aws_local: Aws) -> None:
    """A chunk over SQS's request size limit is refused as a whole by the (moto) server (the
    publisher's own size limit, for the Batch route, is lifted to reach SQS's)."""
    sqs = aws_local.client("sqs")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    jobs = _jobs(15)
    jobs[12] = Envelope.new("embed", {"text": "x" * 1_100_000}, job_id="too-big")
    with pytest.raises(PublishError) as info:
        SqsPublisher(sqs, max_body_chars=2_000_000).publish_batch(url, jobs)
    assert set(info.value.failed) == {"job-10", "job-11", "too-big", "job-13", "job-14"}
    assert len(_drain(sqs, url)) == 10


class FlakyBatchClient:
    """Fails the first entry of the first call with a server-side fault, then accepts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append([e["Id"] for e in Entries])
        if len(self.calls) == 1:
            first = Entries[0]["Id"]
            return {
                "Successful": [{"Id": e["Id"]} for e in Entries[1:]],
                "Failed": [{"Id": first, "SenderFault": False, "Code": "InternalError"}],
            }
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_entry_failed_by_a_server_fault_is_sent_again_alone() -> None:
    client = FlakyBatchClient()
    SqsPublisher(client, backoff=0).publish_batch("url", _jobs(3))  # type: ignore[arg-type]
    assert client.calls == [["0", "1", "2"], ["0"]]


def test_publish_to_missing_queue_raises_and_counts_an_error(aws_local: Aws) -> None:
    metrics = InMemoryMetrics()
    publisher = SqsPublisher(aws_local.client("sqs", max_attempts=1), metrics=metrics)
    with pytest.raises(PublishError):
        publisher.publish(f"{aws_local.url}/123456789012/missing", _jobs(1)[0])
    assert metrics.total("PublishErrors", Route="sqs") == 1


def test_an_envelope_too_long_for_a_batch_job_is_refused_before_sending(aws_local: Aws) -> None:
    """AWS Batch fails a job whose container overrides exceed 8192 characters; the pipe passes the
    body as one: the publisher refuses such an envelope instead of creating a job that fails."""
    sqs = aws_local.client("sqs")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    big = Envelope.new("embed", {"text": "x" * 7000}, job_id="big")
    small = Envelope.new("embed", {"text": "ok"}, job_id="small")
    with pytest.raises(PublishError) as refused:
        SqsPublisher(sqs).publish_batch(url, [big, small])
    assert list(refused.value.failed) == ["big"]
    assert "exceeds the SQS route's 6144" in refused.value.failed["big"]
    got = _drain(sqs, url)
    assert [m["MessageAttributes"]["job_id"]["StringValue"] for m in got] == ["small"]
