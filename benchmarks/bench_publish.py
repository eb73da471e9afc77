"""Publish throughput of the messaging publishers against the raw clients, measured in one run.

Run on demand (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_publish [--sqs-messages 300] [--kafka-messages 5000]
        [--rounds 5] [--json]

Starts moto's server and the Tansu broker on 127.0.0.1, then measures (clients warmed up,
the contenders' order reversed every other round, each SQS contender on an empty queue
because moto slows down as a queue fills), keeping the median of the rounds:

- SQS: ``SqsPublisher.publish_batch`` (chunks of 10) vs raw boto3 ``send_message_batch`` with
  the same pre-serialised bodies and attributes;
- Kafka: ``KafkaPublisher.publish_batch`` (100 per call, returns after the delivery reports)
  vs a raw confluent-kafka producer doing the same (produce 100, flush) and vs a raw
  producer that flushes only once at the end (the upper bound, weaker guarantee);
- dual-write: ``DualWritePublisher`` (SQS primary, Kafka secondary, 10 per call, including
  the final drain of the secondary) vs the slower single path (SQS alone, 10 per call).

A ratio is publisher throughput / reference throughput (1.00 = as fast).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from jobstream.messaging import aws
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import ensure_topics, producer_config
from jobstream.messaging.publishers import (
    Destination,
    DualWritePublisher,
    KafkaPublisher,
    RepairLog,
    SqsPublisher,
)
from rehearsal.servers import MotoServer, TansuBroker, use_dummy_aws_credentials


def _envelopes(n: int) -> list[Envelope]:
    return [
        Envelope.new(
            "embed", {"text": f"job number {i}", "n": i}, job_id=f"job-{uuid.uuid4()}"
        ).with_routes(["sqs", "kafka"])
        for i in range(n)
    ]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _rate(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def _round(
    r: int, sqs: Any, bootstrap: str, kconf: dict[str, Any], sqs_messages: int,
    kafka_messages: int, record: Callable[[str, float], None],
) -> None:  # fmt: skip
    from confluent_kafka import Producer

    def fresh_queue(name: str) -> str:
        # moto's SendMessage slows down as a queue fills: every contender gets an empty queue
        return str(sqs.create_queue(QueueName=f"bench-{r}-{name}")["QueueUrl"])

    topic = f"bench-{r}"
    ensure_topics({"bootstrap.servers": bootstrap}, [topic], partitions=3)
    jobs = _envelopes(sqs_messages)
    kjobs = _envelopes(kafka_messages)

    # --- SQS
    def raw_sqs(url: str) -> None:
        for chunk in _chunks(jobs, 10):
            entries: list[Any] = [
                {
                    "Id": str(i),
                    "MessageBody": e.to_json(),
                    "MessageAttributes": {
                        "job_id": {"DataType": "String", "StringValue": e.job_id},
                        "schema_version": {"DataType": "Number", "StringValue": "1"},
                    },
                }
                for i, e in enumerate(chunk)
            ]
            response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            assert not response.get("Failed")

    sqs_pub = SqsPublisher(sqs)

    def lib_sqs(url: str) -> None:
        for chunk in _chunks(jobs, 10):
            sqs_pub.publish_batch(url, chunk)

    url_raw, url_lib = fresh_queue("raw"), fresh_queue("lib")
    sqs_contenders: list[tuple[str, Callable[[], None]]] = [
        ("sqs raw", lambda: raw_sqs(url_raw)),
        ("sqs publisher", lambda: lib_sqs(url_lib)),
    ]
    for name, fn in sqs_contenders if r % 2 == 0 else reversed(sqs_contenders):
        record(name, _rate(sqs_messages, fn))

    # --- Kafka
    raw_producer = Producer(kconf)

    def raw_kafka_batched() -> None:
        for chunk in _chunks(kjobs, 100):
            for e in chunk:
                raw_producer.produce(topic, key=e.job_id.encode(), value=e.to_bytes())
            raw_producer.flush(30)

    def raw_kafka_stream() -> None:
        for e in kjobs:
            while True:
                try:
                    raw_producer.produce(topic, key=e.job_id.encode(), value=e.to_bytes())
                    break
                except BufferError:
                    raw_producer.poll(0.05)
        raw_producer.flush(30)

    kafka_pub = KafkaPublisher(kconf)

    def lib_kafka() -> None:
        for chunk in _chunks(kjobs, 100):
            kafka_pub.publish_batch(topic, chunk)

    # warm both clients up (connection, metadata) before measuring; alternate the order
    warm = _envelopes(1)
    raw_producer.produce(topic, key=b"warm", value=warm[0].to_bytes())
    raw_producer.flush(30)
    kafka_pub.publish_batch(topic, warm)
    contenders: list[tuple[str, Callable[[], None]]] = [
        ("kafka raw (flush per 100)", raw_kafka_batched),
        ("kafka publisher (100 per call)", lib_kafka),
        ("kafka raw (one flush at end)", raw_kafka_stream),
    ]
    for name, fn in contenders if r % 2 == 0 else reversed(contenders):
        record(name, _rate(kafka_messages, fn))

    # --- dual-write vs the slower single path (SQS)
    url_single, url_dual = fresh_queue("single"), fresh_queue("dual")
    dual = DualWritePublisher(
        Destination(SqsPublisher(sqs), url_dual),
        [Destination(KafkaPublisher(kconf), topic)],
        repair_log=RepairLog(),
    )

    def lib_dual() -> None:
        for chunk in _chunks(jobs, 10):
            dual.publish_batch(chunk)
        dual.drain()

    dual_contenders: list[tuple[str, Callable[[], None]]] = [
        ("sqs alone (slower single path)", lambda: lib_sqs(url_single)),
        ("dual-write sqs+kafka", lib_dual),
    ]
    for name, fn in dual_contenders if r % 2 == 0 else reversed(dual_contenders):
        record(name, _rate(sqs_messages, fn))
    dual.close()


def run(sqs_messages: int, kafka_messages: int, rounds: int) -> dict[str, Any]:
    use_dummy_aws_credentials()
    logging.getLogger("rdkafka").setLevel(logging.CRITICAL)
    moto = MotoServer().start()
    broker = TansuBroker().start()
    try:
        sqs = aws.client("sqs", region="us-east-1", endpoint_url=moto.url)
        rates: dict[str, list[float]] = {}

        def record(name: str, value: float) -> None:
            rates.setdefault(name, []).append(value)

        kconf = producer_config(broker.bootstrap)
        for r in range(rounds):
            _round(r, sqs, broker.bootstrap, kconf, sqs_messages, kafka_messages, record)
    finally:
        broker.stop()
        moto.stop()
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {
        "sqs publisher / raw boto3 send_message_batch": median["sqs publisher"] / median["sqs raw"],
        "kafka publisher / raw producer (flush per 100)": median["kafka publisher (100 per call)"]
        / median["kafka raw (flush per 100)"],
        "kafka publisher / raw producer (one flush at end)": median[
            "kafka publisher (100 per call)"
        ]
        / median["kafka raw (one flush at end)"],
        "dual-write / slower single path (sqs)": median["dual-write sqs+kafka"]
        / median["sqs alone (slower single path)"],
    }
    return {
        "sqs_messages": sqs_messages,
        "kafka_messages": kafka_messages,
        "rounds": rounds,
        "msgs_per_second_median": median,
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="publish throughput of the messaging publishers vs the raw clients"
    )
    parser.add_argument("--sqs-messages", type=int, default=300, help="per contender and round")
    parser.add_argument("--kafka-messages", type=int, default=5000, help="per contender and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.sqs_messages, args.kafka_messages, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rates = Table(
        title=f"publish throughput, msg/s (median of {args.rounds} rounds; SQS {args.sqs_messages}, Kafka {args.kafka_messages} messages)"
    )
    rates.add_column("contender")
    rates.add_column("msg/s", justify="right")
    for name, value in result["msgs_per_second_median"].items():
        rates.add_row(name, f"{value:,.0f}")
    console.print(rates)
    ratios = Table(title="ratios (1.00 = as fast as the reference)")
    ratios.add_column("comparison")
    ratios.add_column("ratio", justify="right")
    for name, value in result["ratios"].items():
        ratios.add_row(name, f"{value:.2f}")
    console.print(ratios)


if __name__ == "__main__":
    main()
