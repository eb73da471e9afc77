"""A rehearsal producer: its own OS process publishing jobs with ``RoutedPublisher`` (the routing
read from the local SSM, dual-write with a repair log on disk, CloudWatch metrics), the way the
backend does, at the rate its control file says.

It writes a journal (JSON lines): ``intent`` before a publish, ``published`` once the primary
route accepted it (job id, routes, publish time, the fault the payload asks for). A job with an
intent but no ``published`` line may or may not exist (the process died in between): it is never
counted as lost. Faults it takes part in: it can be SIGKILLed mid-dual-write (its repair log
keeps the copies in flight; the next incarnation marks them for replay), and its SQS client can
refuse some entries of a ``SendMessageBatch`` on every attempt (a partial failure: the publish
raises for those only, the accepted ones still go to Kafka; the producer retries the refused
ones with the same job id).

Run: ``python -m rehearsal.producer CONFIG.json``.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobstream.messaging import aws
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.metrics import CloudWatchMetrics
from jobstream.messaging.publishers import (
    KafkaPublisher,
    PublishError,
    RepairLog,
    RoutedPublisher,
    SqsPublisher,
)
from jobstream.messaging.routing import RoutingReader

FAULTS = ("intermittent", "permanent", "kill-in-tx", "kill-after-commit")


class PartlyFailingSqs:
    """An SQS client whose ``SendMessageBatch`` refuses the entries of ``doomed`` job ids with a
    server-side fault (``SenderFault: false``), on every attempt, while they are doomed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.doomed: set[str] = set()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        refused = [e for e in Entries if json.loads(e["MessageBody"])["job_id"] in self.doomed]
        sent = [e for e in Entries if e not in refused]
        response: dict[str, Any] = {"Successful": [], "Failed": []}
        if sent:
            response = dict(self._inner.send_message_batch(QueueUrl=QueueUrl, Entries=sent))
        response["Failed"] = list(response.get("Failed", [])) + [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in refused
        ]
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Journal:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, **record: Any) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")


def _control(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: Sequence[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    region = config["region"]
    control_path = Path(config["control"])
    journal = Journal(Path(config["journal"]))
    rng = random.Random(config["seed"])
    cw = aws.client("cloudwatch", region=region, endpoint_url=config["moto_url"], max_attempts=2)
    metrics = CloudWatchMetrics(cw, config["stack"], interval=2.0)
    ssm = aws.client("ssm", region=region, endpoint_url=config["ssm_url"], max_attempts=1)
    sqs = PartlyFailingSqs(aws.client("sqs", region=region, endpoint_url=config["moto_url"]))
    routing = RoutingReader(
        ssm, config["routing_parameter"], ttl=config["ttl"], metrics=metrics, component="producer"
    )
    publisher = RoutedPublisher(
        routing,
        {"sqs": SqsPublisher(sqs, metrics=metrics, backoff=0.05)},  # pyright: ignore[reportArgumentType]
        kafka_factory=lambda r: KafkaPublisher(
            producer_config(
                r.bootstrap_brokers or "",
                kafka_auth=r.kafka_auth,
                region=region,
                delivery_timeout_ms=config.get("kafka_delivery_timeout_ms", 4000),
                extra={"log_level": 0},
            ),
            metrics=metrics,
        ),
        repair_log=RepairLog(config["repair_log"], metrics=metrics),
        metrics=metrics,
        secondary_attempts=2,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seq = 0
    next_at = time.monotonic()
    retry: list[Envelope] = []
    while not stop.is_set():
        control = _control(control_path)
        if control.get("stop"):
            break
        rate, size = float(control.get("rate", 0)), int(control.get("batch", 5))
        if rate <= 0:
            time.sleep(0.1)
            next_at = time.monotonic()
            continue
        batch, retry = retry[:size], retry[size:]
        faults = control.get("faults", {})
        while len(batch) < size:
            seq += 1
            fault = next((f for f in FAULTS if rng.random() < float(faults.get(f, 0))), None)
            payload: dict[str, Any] = {"n": seq}
            if fault:
                payload["fault"] = fault
            batch.append(Envelope.new("square", payload, job_id=f"{config['prefix']}-{seq:06d}"))
        for e in batch:
            journal.write(kind="intent", job=e.job_id, at=time.time())
        partial = float(control.get("partial_batch", 0)) > rng.random() and len(batch) > 2
        if partial:
            sqs.doomed = {batch[1].job_id, batch[-1].job_id}
        try:
            sent = publisher.publish_batch(batch)
            refused: set[str] = set()
        except PublishError as error:
            refused = {e.job_id for e in batch} if "*" in error.failed else set(error.failed)
            sent = [
                e.with_routes(routing.get().publish_targets)
                for e in batch
                if e.job_id not in refused
            ]
            retry += [e for e in batch if e.job_id in refused]
            if partial:
                journal.write(kind="partial", jobs=sorted(refused), at=time.time())
        finally:
            sqs.doomed = set()
        for e in sent:
            journal.write(
                kind="published",
                job=e.job_id,
                routes=list(e.routes),
                at=e.published_at.timestamp(),
                fault=e.payload.get("fault"),
            )
        next_at += size / rate
        stop.wait(max(0.0, next_at - time.monotonic()))
    publisher.drain(20)
    publisher.close()
    metrics.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
