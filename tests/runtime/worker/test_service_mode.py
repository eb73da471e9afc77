"""``jobstream-worker`` in service mode (the ECS task): the Kafka consumer loop as its own process,
stopped by SIGTERM the way ECS stops a task."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from jobstream.contract import env
from jobstream.contract.exits import WorkerExit
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.publishers import KafkaPublisher
from rehearsal.servers import TansuBroker
from tests.runtime.messaging.conftest import create_topics
from tests.runtime.worker.conftest import WorkerRig, base_environment

pytestmark = [pytest.mark.moto_server, pytest.mark.postgres, pytest.mark.kafka]

FAST_GROUP = "JOBSTREAM_TEST_FAST_GROUP"


@pytest.fixture
def service_rig(worker_rig: WorkerRig, kafka_broker: TansuBroker) -> WorkerRig:
    worker_rig.topic = f"jobs-{uuid.uuid4().hex[:8]}"
    worker_rig.bootstrap = kafka_broker.bootstrap
    create_topics(kafka_broker.bootstrap, worker_rig.topic, f"{worker_rig.topic}.dlq")
    worker_rig.env = base_environment(worker_rig, env.CONSUMER_KAFKA)
    return worker_rig


def wait_for(predicate: object, timeout: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_the_service_applies_a_kafka_job_and_stops_cleanly_on_sigterm(
    service_rig: WorkerRig,
) -> None:
    service_rig.set_phase(4)
    assert service_rig.topic and service_rig.bootstrap
    KafkaPublisher(producer_config(service_rig.bootstrap)).publish(
        service_rig.topic,
        Envelope.new("double", {"n": 5}, job_id="job-k").with_routes(["kafka"]),
    )
    proc = service_rig.start()
    try:
        assert wait_for(lambda: "job-k" in service_rig.applied()), proc.stderr
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read() if proc.stderr else ""
    assert code == WorkerExit.OK, log
    assert stopped_in < 20, f"took {stopped_in:.1f} s to stop; ECS kills after its stop timeout"
    assert service_rig.applied() == {"job-k": "kafka"}
    assert "kafka consumer stopped" in log


def test_the_service_without_brokers_in_the_routing_exits_75(service_rig: WorkerRig) -> None:
    service_rig.set_phase(1)
    done = service_rig.run(timeout=30)
    assert done.returncode == WorkerExit.TEMPORARY, done.stderr
    assert "names no brokers" in done.stderr
