from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from jobstream.contract import metrics as m
from jobstream.messaging.metrics import CloudWatchMetrics, InMemoryMetrics
from tests.runtime.messaging.conftest import Aws


class RecordingCloudWatch:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def put_metric_data(self, **kwargs: Any) -> None:
        if self.fail:
            raise ConnectionError("cloudwatch unreachable")
        self.calls.append(kwargs)


def test_counters_are_summed_into_one_datum_per_series() -> None:
    cw = RecordingCloudWatch()
    emitter = CloudWatchMetrics(cw, "dev", interval=None)  # type: ignore[arg-type]
    for _ in range(5):
        emitter.count(m.JOBS_PUBLISHED, Route="sqs")
    emitter.flush()
    (call,) = cw.calls
    (datum,) = call["MetricData"]
    assert (datum["MetricName"], datum["Value"]) == ("JobsPublished", 5)


def test_every_datum_carries_the_stack_dimension() -> None:
    cw = RecordingCloudWatch()
    emitter = CloudWatchMetrics(cw, "prod", interval=None)  # type: ignore[arg-type]
    emitter.count(m.VERIFY_MATCHES)
    emitter.flush()
    assert cw.calls[0]["MetricData"][0]["Dimensions"] == [{"Name": "Stack", "Value": "prod"}]


def test_cloudwatch_failure_is_not_raised_to_the_caller() -> None:
    emitter = CloudWatchMetrics(RecordingCloudWatch(fail=True), "dev", interval=None)  # type: ignore[arg-type]
    emitter.count(m.JOBS_APPLIED, Consumer="kafka")
    emitter.flush()
    assert emitter.dropped_batches == 1


def test_metric_with_wrong_dimensions_is_refused() -> None:
    emitter = InMemoryMetrics()
    with pytest.raises(ValueError, match="takes dimensions"):
        emitter.count(m.JOBS_APPLIED, Route="sqs")


def test_every_metric_name_has_a_spec_with_documented_dimensions() -> None:
    names = {
        m.JOBS_PUBLISHED, m.PUBLISH_ERRORS, m.SECONDARY_PUBLISH_FAILURES,
        m.SECONDARY_PUBLISH_REPAIRED, m.JOBS_APPLIED,
        m.DUPLICATES_SKIPPED, m.PROCESSING_TIME, m.PROCESSING_ERRORS, m.DEAD_LETTERED,
        m.VERIFY_MATCHES, m.VERIFY_MISMATCHES, m.VERIFY_DEFERRED, m.ROUTING_STALE,
    }  # fmt: skip
    assert set(m.METRICS) == names
    assert m.METRICS[m.PROCESSING_TIME].unit == "Milliseconds"


@pytest.mark.moto_server
def test_flushed_metrics_are_readable_from_cloudwatch(aws_local: Aws) -> None:
    cw = aws_local.client("cloudwatch")
    emitter = CloudWatchMetrics(cw, "dev", interval=None)
    emitter.count(m.JOBS_APPLIED, 3, Consumer="sqs")
    emitter.timing(m.PROCESSING_TIME, 12.5, Consumer="sqs")
    emitter.close()
    now = dt.datetime.now(dt.UTC)
    stats = cw.get_metric_statistics(
        Namespace="Jobstream",
        MetricName="JobsApplied",
        Dimensions=[{"Name": "Stack", "Value": "dev"}, {"Name": "Consumer", "Value": "sqs"}],
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p.get("Sum", 0) for p in stats["Datapoints"]) == 3
