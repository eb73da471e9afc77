"""The dead-letter scans' own timing, as the operator commands run them against AWS (the
server-backed tests of parked, redrive and replay use ``local_read_timing`` instead)."""

from __future__ import annotations

from typing import Any

from ops.aws_clients import Aws
from ops.dead_letters import RECEIVE_WAIT_SECONDS, SqsHold
from ops.live import LiveStack
from tests.ops.conftest import Seeder


def test_an_sqs_scan_long_polls_every_receive_including_the_empty_one_that_ends_it(
    account: Seeder,
) -> None:
    # SQS answers a short poll from a sample of its servers, so an empty short poll does not
    # mean an empty queue; only a long poll (WaitTimeSeconds >= 1) asks them all.
    # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
    sqs = account.client("sqs")
    url = sqs.create_queue(QueueName="scanned")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    aws = Aws(sqs.meta.region_name)
    waits: list[Any] = []
    aws.client("sqs").meta.events.register(
        "provide-client-params.sqs.ReceiveMessage",
        lambda params, **_: waits.append(params.get("WaitTimeSeconds")),
    )

    with SqsHold(LiveStack(account.stack, account.names, aws), url) as hold:
        assert len(hold.read(10)) == 1

    assert len(waits) == 2, f"one receive that finds the message, one empty one: {waits}"
    assert all(w == RECEIVE_WAIT_SECONDS >= 1 for w in waits), f"a short poll in {waits}"
