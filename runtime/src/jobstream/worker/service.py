"""Service mode (``JOBSTREAM_CONSUMER=kafka``, the ECS service): the Kafka consumer loop until
SIGTERM. ECS sends SIGTERM and waits the container's stop timeout before SIGKILL; the loop
finishes the job in hand, commits its offset and closes within that time (a handler must finish
well inside it)."""

from __future__ import annotations

import logging
import threading

from jobstream.contract.env import CONSUMER_KAFKA
from jobstream.contract.exits import WorkerExit
from jobstream.messaging.consumers import JobProcessor, KafkaConsumer
from jobstream.worker.wiring import Wiring

log = logging.getLogger("jobstream.worker")


def run_service(wiring: Wiring, stop: threading.Event) -> WorkerExit:
    handler = wiring.handler()
    routing = wiring.read_routing()
    dead_letter = wiring.dead_letter_producer(routing)
    ledger = wiring.ledger()
    consumer = KafkaConsumer(
        wiring.routing(),
        JobProcessor(CONSUMER_KAFKA, handler, ledger, wiring.metrics()),
        wiring.kafka_consumer_config,
        dead_letter,
    )
    log.info(
        "kafka consumer started: stack %s, phase %s, topic %s, group %s, mode %s",
        routing.stack,
        routing.phase,
        routing.topic,
        routing.consumer_group,
        routing.mode(CONSUMER_KAFKA),
    )
    try:
        consumer.run(stop)
    finally:
        dead_letter.flush(10)
        ledger.close()
    log.info("kafka consumer stopped after %d commits", consumer.committed)
    return WorkerExit.OK
