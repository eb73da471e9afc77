from __future__ import annotations

import json
from typing import Any

import pytest

from jobstream.contract.phases import all_phases
from jobstream.contract.routing import Routing, RoutingError, routing_parameter_name
from jobstream.messaging.routing import RoutingReader
from tests.runtime.messaging.conftest import Aws


def routing_for(number: int, **overrides: Any) -> Routing:
    """The routing document the infrastructure publishes for a phase (from infra.phases)."""
    from jobstream.contract.phases import phase

    p = phase(number)
    doc: dict[str, Any] = {
        "version": 1,
        "stack": "dev",
        "phase": number,
        "publish_targets": [str(r) for r in p.publish_targets],
        "consumer_modes": {str(r): str(m) for r, m in p.consumer_modes.items()},
        "queue_url": None if number == 5 else "https://sqs.example/q",
        "dlq_url": None if number == 5 else "https://sqs.example/dlq",
        "topic": None if number == 1 else "jobstream.jobs",
        "dead_letter_topic": None if number == 1 else "jobstream.jobs.dlq",
        "bootstrap_brokers": None if number == 1 else "b-1:9098",
        "consumer_group": None if number == 1 else "jobstream-ml",
        "kafka_auth": None if number == 1 else "iam",
    }
    doc.update(overrides)
    return Routing.from_dict(doc)


@pytest.mark.parametrize("number", [p.number for p in all_phases()])
def test_every_phase_of_the_table_parses_and_round_trips(number: int) -> None:
    routing = routing_for(number)
    assert Routing.from_json(routing.to_json()) == routing


def test_phase_three_dual_writes_with_sqs_primary_and_kafka_verifying() -> None:
    routing = routing_for(3)
    assert (routing.primary_route, routing.secondary_routes) == ("sqs", ("kafka",))
    assert (routing.mode("sqs"), routing.mode("kafka")) == ("primary", "verify")


def test_missing_key_is_named_in_the_error() -> None:
    doc = json.loads(routing_for(2).to_json())
    del doc["topic"]
    with pytest.raises(RoutingError, match="lacks keys: topic"):
        Routing.from_json(json.dumps(doc))


def test_unknown_consumer_mode_is_rejected() -> None:
    with pytest.raises(RoutingError, match="unknown mode 'shadow'"):
        routing_for(3, consumer_modes={"sqs": "primary", "kafka": "shadow"})


def test_two_primary_consumers_are_rejected() -> None:
    with pytest.raises(RoutingError, match="exactly one consumer must be primary"):
        routing_for(3, consumer_modes={"sqs": "primary", "kafka": "primary"})


def test_kafka_target_without_bootstrap_brokers_is_rejected() -> None:
    with pytest.raises(RoutingError, match="bootstrap_brokers is required"):
        routing_for(2, bootstrap_brokers=None)


def test_unsupported_version_is_rejected() -> None:
    with pytest.raises(RoutingError, match="version 2"):
        routing_for(1, version=2)


def test_document_that_is_not_json_is_rejected() -> None:
    with pytest.raises(RoutingError, match="not JSON"):
        Routing.from_json("{phase: 1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def read_then_rewrite(
    aws_local: Aws, first: Routing, then: str, *, ttl: float, after: float
) -> RoutingReader:
    """A reader that has read ``first`` (asserted), after which the parameter was overwritten
    with ``then`` and ``after`` seconds passed on the reader's clock."""
    ssm = aws_local.client("ssm")
    name = routing_parameter_name("dev")
    ssm.put_parameter(Name=name, Type="String", Value=first.to_json())
    clock = FakeClock()
    reader = RoutingReader(ssm, name, ttl=ttl, clock=clock)
    assert reader.get().phase == first.phase
    ssm.put_parameter(Name=name, Type="String", Value=then, Overwrite=True)
    clock.now = after
    return reader


@pytest.mark.moto_server
def test_reader_serves_the_cached_document_within_the_ttl(aws_local: Aws) -> None:
    reader = read_then_rewrite(
        aws_local, routing_for(1), routing_for(2).to_json(), ttl=15, after=14.9
    )
    assert (reader.get().phase, reader.fetches) == (1, 1)


@pytest.mark.moto_server
def test_reader_picks_up_a_phase_change_after_the_ttl(aws_local: Aws) -> None:
    reader = read_then_rewrite(
        aws_local, routing_for(1), routing_for(2).to_json(), ttl=15, after=15.0
    )
    assert reader.get().phase == 2


@pytest.mark.moto_server
def test_reader_keeps_the_last_good_document_when_a_refresh_is_invalid(aws_local: Aws) -> None:
    reader = read_then_rewrite(aws_local, routing_for(3), "{}", ttl=1, after=5)
    assert reader.get().phase == 3


@pytest.mark.moto_server
def test_reader_raises_when_the_parameter_does_not_exist(aws_local: Aws) -> None:
    reader = RoutingReader(aws_local.client("ssm"), routing_parameter_name("nope"))
    with pytest.raises(Exception, match="ParameterNotFound"):
        reader.get()


class FailingSsm:
    """An SSM client that answers once, then fails every refresh (a lost network path)."""

    def __init__(self, first: Routing) -> None:
        self.first = first
        self.calls = 0

    def get_parameter(self, Name: str) -> dict[str, Any]:  # noqa: N803 (boto3's keyword)
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("ssm unreachable")
        return {"Parameter": {"Name": Name, "Value": self.first.to_json()}}


def test_a_reader_whose_refreshes_fail_reports_a_stale_copy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It keeps serving the last good document (a transient error must not stop a service) but,
    once the copy is older than a few TTLs, logs it and counts RoutingStale for the alarm."""
    from jobstream.messaging.metrics import InMemoryMetrics

    clock, metrics = FakeClock(), InMemoryMetrics()
    reader = RoutingReader(
        FailingSsm(routing_for(3)),  # pyright: ignore[reportArgumentType]
        "/jobstream/dev/routing",
        ttl=15,
        metrics=metrics,
        clock=clock,
    )
    assert reader.get().phase == 3
    clock.now = 30  # two TTLs: not stale yet
    reader.get()
    assert metrics.total("RoutingStale") == 0
    clock.now = 61  # past four TTLs
    with caplog.at_level("WARNING"):
        assert reader.get().phase == 3
    assert reader.stale
    assert metrics.total("RoutingStale") == 1
    assert "routing document /jobstream/dev/routing is stale" in caplog.text


def test_routing_for_phase_builds_what_the_phase_table_says() -> None:
    from jobstream.contract.phases import phase
    from jobstream.contract.routing import routing_for_phase

    routing = routing_for_phase(
        phase(4),
        stack="dev",
        queue_url="https://sqs.example/q",
        topic="t",
        bootstrap_brokers="b-1:9098",
        consumer_group="g",
    )
    assert routing.publish_targets == ("kafka",)
    assert (routing.mode("sqs"), routing.mode("kafka")) == ("drain", "primary")
    assert routing.applies("sqs") and routing.applies("kafka")
    assert routing.kafka_auth == "iam"


def test_routing_for_phase_refuses_a_phase_without_the_places_it_needs() -> None:
    from jobstream.contract.phases import phase
    from jobstream.contract.routing import routing_for_phase

    with pytest.raises(RoutingError, match="queue_url is required"):
        routing_for_phase(
            phase(4), stack="dev", topic="t", bootstrap_brokers="b", consumer_group="g"
        )
