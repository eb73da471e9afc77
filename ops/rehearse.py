"""``jobstream rehearse``: the whole migration, locally, on real protocols, with faults.

Starts moto's server (SQS, SSM, CloudWatch) and the Tansu Kafka broker on 127.0.0.1,
creates the queue + DLQ (redrive policy), the topic + dead-letter topic and the routing
parameter, then runs a producer and both consumers (threads) while it walks the routing
parameter through phases 1 -> 2 -> 3 -> 4, rolls back 4 -> 3 and moves forward 3 -> 4 again.

Faults injected:
- SQS consumer crash after applying a job but before deleting its message (phase 1): the
  message comes back after the visibility timeout and the ledger suppresses it;
- Kafka broker outage during dual-write (phase 2): Tansu keeps its log only in memory, so a
  restart of the process would erase it, which a real broker does not do; the broker is
  therefore taken away from the clients by a TCP proxy that resets every connection and
  refuses new ones for ``--outage`` seconds. Secondary writes that fail are recorded in the
  repair log and replayed before leaving phase 2;
- Kafka consumer crash mid-job, before applying and committing (phase 4, cutover): a new
  consumer resumes from the committed offset;
- poison messages: a malformed body on SQS (moved to the DLQ by the redrive policy) and an
  unknown schema version on Kafka (produced to the dead-letter topic).

Before each cutover (3 -> 4) the rehearsal applies the operator's preflight gate: every
job published to SQS alone (phase 1) has been applied and the repair log is empty; jobs
that went to Kafka too need no draining (the Kafka consumer applies what SQS did not).

Event counters (duplicates suppressed, verify parity, dead-lettered) are attributed to the
step during which they happened; job outcomes (published, applied, lost, latency) to the
step in which the job was published. Exit status 1 if any job is lost or applied twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobstream.contract import metrics as m
from jobstream.contract.routing import Routing, routing_parameter_name
from jobstream.messaging.consumers import (
    JobProcessor,
    KafkaConsumer,
    ProcessingError,
    SqsJobConsumer,
)
from jobstream.messaging.envelope import Envelope, EnvelopeError
from jobstream.messaging.ledger import Ledger, PostgresLedger, SqlCursor, SqliteLedger
from jobstream.messaging.metrics import CloudWatchMetrics, InMemoryMetrics, MetricsSink, TeeMetrics
from jobstream.messaging.publishers import (
    KafkaPublisher,
    PublishError,
    RepairLog,
    RoutedPublisher,
    SqsPublisher,
)
from jobstream.messaging.routing import RoutingReader
from rehearsal.servers import (
    LocalPostgres,
    MotoServer,
    TansuBroker,
    TcpProxy,
    free_port,
    use_dummy_aws_credentials,
)

log = logging.getLogger("jobstream.rehearse")

STACK = "rehearsal"
REGION = "us-east-1"
TOPIC = "jobstream.jobs"
DEAD_LETTER_TOPIC = "jobstream.jobs.dlq"
CONSUMER_GROUP = "jobstream-ml"
DEFAULT_STEPS = (1, 2, 3, 4, 3, 4)
SQS_VISIBILITY_SECONDS = 4
SQS_MAX_RECEIVE = 3


class ConsumerCrashError(BaseException):
    """A simulated crash: escapes every ``except Exception`` (no delete, no commit)."""


@dataclass
class RehearsalConfig:
    phase_seconds: float = 12.0
    rate: float = 40.0
    batch: int = 5
    work_ms: float = 2.0
    outage: float = 4.0
    drain_timeout: float = 60.0
    postgres: bool = False
    faults: bool = True
    steps: tuple[int, ...] = DEFAULT_STEPS
    routing_ttl: float = 0.5


@dataclass
class StepStats:
    step: int
    phase: int
    published: int = 0
    applied: int = 0
    lost: int = 0
    applied_twice: int = 0
    duplicates_suppressed: int = 0
    verify_matches: int = 0
    verify_mismatches: int = 0
    dead_lettered: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def parity(self) -> float | None:
        total = self.verify_matches + self.verify_mismatches
        return None if total == 0 else self.verify_matches / total


@dataclass
class Published:
    step: int
    routes: tuple[str, ...]
    at: float


# --------------------------------------------------------------------------- result store


def _sqlite_writer(cur: SqlCursor, job_id: str, result: Mapping[str, Any]) -> None:
    cur.execute(
        "INSERT INTO rehearsal_results (job_id, applied_at) VALUES (?, ?)", (job_id, time.time())
    )


def _postgres_writer(cur: SqlCursor, job_id: str, result: Mapping[str, Any]) -> None:
    cur.execute(
        "INSERT INTO rehearsal_results (job_id, applied_at) VALUES (%s, %s)",
        (job_id, time.time()),
    )


# The results table has no unique key on purpose: a job applied twice shows up as two rows.
_RESULTS_DDL = (
    "CREATE TABLE IF NOT EXISTS rehearsal_results (job_id TEXT NOT NULL, applied_at REAL NOT NULL)"
)
_RESULTS_QUERY = (
    "SELECT r.job_id, count(*), min(r.applied_at), min(l.consumer) FROM rehearsal_results r "
    "JOIN jobstream_ledger l ON l.job_id = r.job_id GROUP BY r.job_id"
)


class Store:
    """The ledger plus the rehearsal's own view of the result rows."""

    def __init__(self, workdir: Path, use_postgres: bool) -> None:
        self._pg: LocalPostgres | None = None
        self._sqlite_path = str(workdir / "ledger.db")
        if use_postgres:
            self._pg = LocalPostgres().start()
            import psycopg

            with psycopg.connect(self._pg.conninfo, autocommit=True) as conn:
                conn.execute(_RESULTS_DDL.replace("REAL", "DOUBLE PRECISION"))
        else:
            with contextlib.closing(sqlite3.connect(self._sqlite_path)) as conn:
                conn.execute(_RESULTS_DDL)
                conn.commit()
        self.ledger = self.new_ledger()

    @property
    def kind(self) -> str:
        return "postgresql" if self._pg else "sqlite"

    def new_ledger(self) -> Ledger:
        if self._pg is not None:
            return PostgresLedger.from_conninfo(self._pg.conninfo, writer=_postgres_writer)
        return SqliteLedger(self._sqlite_path, writer=_sqlite_writer)

    def results(self) -> dict[str, tuple[int, float, str]]:
        """job id -> (result rows, first applied_at, consumer recorded in the ledger)."""
        if self._pg is not None:
            import psycopg

            with psycopg.connect(self._pg.conninfo) as conn:
                rows = conn.execute(_RESULTS_QUERY).fetchall()
        else:
            with contextlib.closing(sqlite3.connect(self._sqlite_path)) as conn:
                rows = conn.execute(_RESULTS_QUERY).fetchall()
        return {str(j): (int(n), float(t), str(c)) for j, n, t, c in rows}

    def close(self) -> None:
        self.ledger.close()
        if self._pg is not None:
            self._pg.stop()


class _PipeStandIn:
    """The pipe and one Batch job per message, in a thread: receive, delete once "submitted",
    then process; a crashed attempt is run again (Batch's retry), a job that fails for good is
    counted as parked."""

    def __init__(
        self, sqs: Any, queue_url: str, job: SqsJobConsumer, metrics: Any, events: list[str]
    ) -> None:
        self._sqs, self._url, self._job, self._metrics = sqs, queue_url, job, metrics
        self._events = events

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            got = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=1, WaitTimeSeconds=1
            ).get("Messages", [])
            for message in got:
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
                self._run_job(message.get("Body", ""))

    def _run_job(self, body: str) -> None:
        try:
            envelope = SqsJobConsumer.parse(body)
        except EnvelopeError:
            self._metrics.count(m.DEAD_LETTERED, Consumer="sqs")
            return
        for _attempt in range(3):
            try:
                self._job.process(envelope)
                return
            except ProcessingError:
                self._metrics.count(m.DEAD_LETTERED, Consumer="sqs")
                return
            except ConsumerCrashError as crash:
                self._events.append(f"{crash}; Batch retried the job")
                continue


class CrashAfterApplyLedger:
    """Wraps a ledger; when armed, the next successful apply is followed by a crash (the
    result is committed, the message is neither deleted nor committed)."""

    def __init__(self, inner: Ledger, armed: threading.Event) -> None:
        self._inner = inner
        self._armed = armed
        self.crashes = 0

    def apply(self, job_id: str, digest: str, consumer: str, result: Mapping[str, Any]) -> bool:
        applied = self._inner.apply(job_id, digest, consumer, result)
        if applied and self._armed.is_set():
            self._armed.clear()
            self.crashes += 1
            raise ConsumerCrashError(f"{consumer} consumer killed after applying {job_id}")
        return applied

    def digest_of(self, job_id: str) -> str | None:
        return self._inner.digest_of(job_id)

    def defer_verify(self, job_id: str, digest: str, consumer: str) -> None:
        self._inner.defer_verify(job_id, digest, consumer)

    def claim_verify(self, job_id: str) -> str | None:
        return self._inner.claim_verify(job_id)

    def applied_count(self) -> int:
        return self._inner.applied_count()

    def close(self) -> None:
        self._inner.close()


# --------------------------------------------------------------------------- accounting


def tally_jobs(
    steps: list[StepStats],
    published: Mapping[str, Published],
    results: Mapping[str, tuple[int, float, str]],
) -> tuple[dict[int, dict[str, list[float]]], dict[str, list[float]]]:
    """Count every published job in the step it was published in: applied, lost (no result
    row), applied twice (more than one result row); returns the latencies (ms) per step and
    consumer, and per consumer overall."""
    latencies: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    all_latency: dict[str, list[float]] = defaultdict(list)
    for job_id, pub in published.items():
        s = steps[pub.step]
        s.published += 1
        got = results.get(job_id)
        if got is None:
            s.lost += 1
            continue
        rows, applied_at, consumer = got
        s.applied += 1
        if rows > 1:
            s.applied_twice += 1
        ms = max(0.0, (applied_at - pub.at) * 1000.0)
        latencies[pub.step][consumer].append(ms)
        all_latency[consumer].append(ms)
    return latencies, all_latency


def rehearsal_ok(steps: list[StepStats]) -> bool:
    """The verdict (and the exit status): no job lost, none applied twice."""
    return all(s.lost == 0 and s.applied_twice == 0 for s in steps)


# --------------------------------------------------------------------------- the rehearsal


def _percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99) of the values."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Rehearsal:
    def __init__(self, config: RehearsalConfig, on_progress: Callable[[str], None] | None = None):
        self.config = config
        self._progress = on_progress or (lambda _msg: None)
        self.metrics = InMemoryMetrics()
        self.sink: MetricsSink = self.metrics
        self.published: dict[str, Published] = {}
        self._pub_lock = threading.Lock()
        self.step_index = 0
        self.events: list[str] = []
        self.crashes: dict[str, int] = defaultdict(int)
        self.repaired = 0
        self.poison_injected = 0
        self.publish_retries = 0
        self._snapshots: list[dict[str, float]] = []
        self._stop_producer = threading.Event()
        self._stop_consumers = threading.Event()
        self._sqs_crash = threading.Event()
        self._kafka_crash = threading.Event()
        self._seq = 0

    # ----------------------------------------------------------------- setup
    def _routing(self, number: int) -> Routing:
        from jobstream.contract.phases import phase

        p = phase(number)
        return Routing(
            stack=STACK,
            phase=number,
            publish_targets=tuple(str(r) for r in p.publish_targets),
            consumer_modes={str(r): str(mode) for r, mode in p.consumer_modes.items()},
            queue_url=self.queue_url,
            dlq_url=self.dlq_url,
            topic=TOPIC,
            dead_letter_topic=DEAD_LETTER_TOPIC,
            bootstrap_brokers=self.bootstrap,
            consumer_group=CONSUMER_GROUP,
            kafka_auth="none",
        )

    def _kafka_extra(self) -> dict[str, Any]:
        return {"logger": logging.getLogger("rdkafka")}

    def _set_phase(self, number: int) -> None:
        self.ssm.put_parameter(
            Name=self.parameter,
            Type="String",
            Value=self._routing(number).to_json(),
            Overwrite=True,
        )

    def _handler(self, consumer: str, crash: threading.Event | None) -> Any:
        work = self.config.work_ms / 1000.0

        def handle(envelope: Envelope) -> Mapping[str, Any]:
            time.sleep(work)
            if crash is not None and crash.is_set():
                crash.clear()
                self.crashes[consumer] += 1
                raise ConsumerCrashError(f"{consumer} consumer killed mid-job {envelope.job_id}")
            n = int(envelope.payload["n"])
            return {"square": n * n, "type": envelope.type}

        return handle

    # ----------------------------------------------------------------- workers
    def _producer(self) -> None:
        interval = self.config.batch / self.config.rate
        next_at = time.monotonic()
        while not self._stop_producer.is_set():
            step = self.step_index
            batch = []
            for _ in range(self.config.batch):
                self._seq += 1
                batch.append(
                    Envelope.new("square", {"n": self._seq}, job_id=f"job-{self._seq:07d}")
                )
            while True:
                try:
                    sent = self.publisher.publish_batch(batch)
                    break
                except PublishError:
                    # the primary route refused: the producer retries with the same job ids
                    self.publish_retries += 1
                    time.sleep(0.5)
            with self._pub_lock:
                for e in sent:
                    self.published[e.job_id] = Published(step, e.routes, e.published_at.timestamp())
            next_at += interval
            self._stop_producer.wait(max(0.0, next_at - time.monotonic()))

    def _supervise(self, name: str, make: Callable[[], Any]) -> None:
        """Runs a consumer; after a crash, starts a new one (as an orchestrator would)."""
        while not self._stop_consumers.is_set():
            consumer = make()
            try:
                consumer.run(self._stop_consumers)
            except ConsumerCrashError as crash:
                self.events.append(f"step {self.step_index + 1}: {crash}; restarted")
                self._stop_consumers.wait(0.5)
            except Exception:
                log.exception("%s consumer failed; restarting", name)
                self._stop_consumers.wait(1.0)

    def _make_sqs_consumer(self) -> _PipeStandIn:
        ledger = CrashAfterApplyLedger(self.store.new_ledger(), self._sqs_crash)
        reader = RoutingReader(self.ssm, self.parameter, ttl=self.config.routing_ttl)
        processor = JobProcessor("sqs", self._handler("sqs", None), ledger, self.sink)
        return _PipeStandIn(
            self.sqs, self.queue_url, SqsJobConsumer(reader, processor), self.sink, self.events
        )

    def _make_kafka_consumer(self) -> KafkaConsumer:
        from confluent_kafka import Producer

        from jobstream.messaging.kafka import consumer_config, producer_config

        reader = RoutingReader(self.ssm, self.parameter, ttl=self.config.routing_ttl)
        processor = JobProcessor(
            "kafka",
            self._handler("kafka", self._kafka_crash),
            self.store.new_ledger(),
            self.sink,
        )
        return KafkaConsumer(
            reader,
            processor,
            lambda r: consumer_config(
                r.bootstrap_brokers,
                r.consumer_group,
                session_timeout_ms=2000,
                heartbeat_ms=500,
                extra=self._kafka_extra(),
            ),
            Producer(producer_config(self.bootstrap, extra=self._kafka_extra())),
            idle_sleep=0.2,
            verify_wait=5.0,
        )

    # ----------------------------------------------------------------- faults and gates
    def _inject_sqs_poison(self) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody="{this is not json")
        self.poison_injected += 1
        self.events.append(f"step {self.step_index + 1}: poison message sent to SQS")

    def _inject_kafka_poison(self) -> None:
        from confluent_kafka import Producer

        from jobstream.messaging.kafka import producer_config

        producer = Producer(producer_config(self.bootstrap, extra=self._kafka_extra()))
        doc = json.dumps({"schema_version": 99, "job_id": "poison-kafka"})
        producer.produce(TOPIC, key=b"poison-kafka", value=doc.encode())
        producer.flush(10)
        self.poison_injected += 1
        self.events.append(f"step {self.step_index + 1}: poison message (schema 99) sent to Kafka")

    def _broker_outage(self) -> None:
        self.events.append(
            f"step {self.step_index + 1}: Kafka broker down for {self.config.outage:g}s "
            "(all connections reset)"
        )
        self.proxy.close()
        time.sleep(self.config.outage)
        self.proxy.open()

    def _repair(self) -> None:
        self.publisher.drain(self.config.drain_timeout)
        if len(self.repair_log):
            replayed, failing = self.repair_log.replay(self.publisher.queues())
            self.repaired += replayed
            self.events.append(
                f"step {self.step_index + 1}: repair log replayed {replayed} job(s) to Kafka"
                + (f", {failing} still failing" if failing else "")
            )

    def _unapplied(self, predicate: Callable[[Published], bool]) -> list[str]:
        with self._pub_lock:
            wanted = [j for j, p in self.published.items() if predicate(p)]
        ledger = self.store.ledger
        return [j for j in wanted if ledger.digest_of(j) is None]

    def _cutover_gate(self) -> None:
        """Preflight before 3 -> 4: SQS-only jobs applied, repair log empty."""
        self._repair()
        deadline = time.monotonic() + self.config.drain_timeout
        while True:
            pending = self._unapplied(lambda p: "kafka" not in p.routes)
            if not pending and not len(self.repair_log):
                return
            if time.monotonic() > deadline:
                self.events.append(
                    f"cutover gate timed out: {len(pending)} SQS-only job(s) not applied"
                )
                return
            time.sleep(0.2)
            self._repair()

    # ----------------------------------------------------------------- run
    def _snapshot(self) -> dict[str, float]:
        return {
            "dup": self.metrics.total(m.DUPLICATES_SKIPPED),
            "match": self.metrics.total(m.VERIFY_MATCHES),
            "mismatch": self.metrics.total(m.VERIFY_MISMATCHES),
            "dlq": self.metrics.total(m.DEAD_LETTERED),
        }

    def _run_step(self, index: int, number: int) -> None:
        steps = self.config.steps
        previous = steps[index - 1] if index else None
        if previous == 3 and number == 4:
            self._cutover_gate()
        self._snapshots.append(self._snapshot())
        self.step_index = index
        self._set_phase(number)
        label = f"step {index + 1}/{len(steps)}: phase {number}"
        self._progress(label)
        start = time.monotonic()
        faults: list[tuple[float, Callable[[], None]]] = []
        if self.config.faults:
            first = steps.index(number) == index
            if number == 1 and first:
                faults += [(0.25, self._sqs_crash.set), (0.4, self._inject_sqs_poison)]
            if number == 2 and first:
                faults.append((0.3, self._broker_outage))
            if number == 3 and first:
                faults.append((0.3, self._inject_kafka_poison))
            if number == 4 and first:
                faults.append((0.4, self._kafka_crash.set))
        for at, fault in sorted(faults, key=lambda f: f[0]):
            delay = start + at * self.config.phase_seconds - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            fault()
        remaining = start + self.config.phase_seconds - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        if number == 2:
            self._repair()

    def run(self) -> dict[str, Any]:
        use_dummy_aws_credentials()
        logging.getLogger("rdkafka").setLevel(logging.CRITICAL)
        workdir = Path(tempfile.mkdtemp(prefix="jobstream-rehearsal-"))
        with contextlib.ExitStack() as stack:
            self._progress(
                "starting moto server, Kafka broker"
                + (", PostgreSQL" if self.config.postgres else "")
            )
            moto = MotoServer().start()
            stack.callback(moto.stop)
            proxy_port = free_port()
            broker = TansuBroker(advertised_port=proxy_port).start()
            stack.callback(broker.stop)
            self.proxy = TcpProxy(broker.port, proxy_port).open()
            stack.callback(self.proxy.close)
            self.bootstrap = broker.bootstrap
            self.store = Store(workdir, self.config.postgres)
            stack.callback(self.store.close)
            return self._run(stack, moto.url, workdir)
        raise AssertionError("unreachable")

    def _run(self, stack: contextlib.ExitStack, endpoint: str, workdir: Path) -> dict[str, Any]:
        from jobstream.messaging import aws
        from jobstream.messaging.kafka import ensure_topics, producer_config

        self.sqs = aws.client("sqs", region=REGION, endpoint_url=endpoint)
        # every metric goes to moto's CloudWatch too, through the production emitter
        self.cloudwatch = aws.client("cloudwatch", region=REGION, endpoint_url=endpoint)
        self.cw_metrics = CloudWatchMetrics(self.cloudwatch, STACK, interval=5.0)
        self.sink = TeeMetrics(self.metrics, self.cw_metrics)
        self.ssm = aws.client("ssm", region=REGION, endpoint_url=endpoint)
        self.dlq_url = self.sqs.create_queue(QueueName="jobstream-jobs-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = self.sqs.create_queue(
            QueueName="jobstream-jobs",
            Attributes={
                "VisibilityTimeout": str(SQS_VISIBILITY_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(SQS_MAX_RECEIVE)}
                ),
            },
        )["QueueUrl"]
        ensure_topics(
            {"bootstrap.servers": self.bootstrap, **self._kafka_extra()}, [TOPIC], partitions=3
        )
        ensure_topics(
            {"bootstrap.servers": self.bootstrap, **self._kafka_extra()},
            [DEAD_LETTER_TOPIC],
            partitions=1,
        )
        self.parameter = routing_parameter_name(STACK)
        self._set_phase(self.config.steps[0])
        self.repair_log = RepairLog(workdir / "repair.jsonl", metrics=self.sink)
        kafka = KafkaPublisher(
            producer_config(self.bootstrap, delivery_timeout_ms=1500, extra=self._kafka_extra()),
            metrics=self.sink,
        )
        self.publisher = RoutedPublisher(
            RoutingReader(self.ssm, self.parameter, ttl=self.config.routing_ttl),
            {"sqs": SqsPublisher(self.sqs, metrics=self.sink), "kafka": kafka},
            repair_log=self.repair_log,
            metrics=self.sink,
            secondary_attempts=2,
        )
        threads = [
            threading.Thread(
                target=self._supervise, args=("sqs", self._make_sqs_consumer), daemon=True
            ),
            threading.Thread(
                target=self._supervise, args=("kafka", self._make_kafka_consumer), daemon=True
            ),
        ]
        for t in threads:
            t.start()
        producer = threading.Thread(target=self._producer, daemon=True)
        producer.start()
        started = time.monotonic()
        try:
            for index, number in enumerate(self.config.steps):
                self._run_step(index, number)
        finally:
            self._stop_producer.set()
            producer.join(30)
        self._repair()
        self._snapshots.append(self._snapshot())
        self._progress("draining: waiting for every published job to be applied")
        deadline = time.monotonic() + self.config.drain_timeout
        while self._unapplied(lambda _p: True) and time.monotonic() < deadline:
            time.sleep(0.25)
        # let in-flight redeliveries (crash, poison) reach the ledger / DLQ before counting
        time.sleep(SQS_VISIBILITY_SECONDS + 1)
        self._final_snapshot = self._snapshot()
        self._stop_consumers.set()
        for t in threads:
            t.join(30)
        self.publisher.close()
        self.cw_metrics.close()
        cw_applied = self._cloudwatch_sum(m.JOBS_APPLIED, ("sqs", "kafka"))
        elapsed = time.monotonic() - started
        dlq_depth = int(
            self.sqs.get_queue_attributes(
                QueueUrl=self.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        return self._report(elapsed, dlq_depth, cw_applied)

    def _cloudwatch_sum(self, name: str, consumers: tuple[str, ...]) -> float:
        """Read a counter back from (moto's) CloudWatch: proves the emitter's batches landed."""
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        total = 0.0
        for consumer in consumers:
            stats = self.cloudwatch.get_metric_statistics(
                Namespace=m.NAMESPACE,
                MetricName=name,
                Dimensions=[
                    {"Name": m.DIM_STACK, "Value": STACK},
                    {"Name": m.DIM_CONSUMER, "Value": consumer},
                ],
                StartTime=now - dt.timedelta(hours=1),
                EndTime=now + dt.timedelta(minutes=5),
                Period=3600,
                Statistics=["Sum"],
            )
            total += sum(p.get("Sum", 0.0) for p in stats["Datapoints"])
        return total

    # ----------------------------------------------------------------- report
    def _report(self, elapsed: float, dlq_depth: int, cw_applied: float) -> dict[str, Any]:
        results = self.store.results()
        steps: list[StepStats] = [
            StepStats(step=i + 1, phase=n) for i, n in enumerate(self.config.steps)
        ]
        with self._pub_lock:
            published = dict(self.published)
        latencies, all_latency = tally_jobs(steps, published, results)
        snaps = [*self._snapshots[1:], self._final_snapshot]
        for i, s in enumerate(steps):
            before, after = (
                self._snapshots[i],
                snaps[i] if i + 1 < len(steps) else self._final_snapshot,
            )
            s.duplicates_suppressed = int(after["dup"] - before["dup"])
            s.verify_matches = int(after["match"] - before["match"])
            s.verify_mismatches = int(after["mismatch"] - before["mismatch"])
            s.dead_lettered = int(after["dlq"] - before["dlq"])
            s.latency_ms = {
                route: {"p50": _percentile(v, 50), "p99": _percentile(v, 99)}
                for route, v in sorted(latencies[i].items())
            }
        lost, twice = sum(s.lost for s in steps), sum(s.applied_twice for s in steps)
        matches = sum(s.verify_matches for s in steps)
        mismatches = sum(s.verify_mismatches for s in steps)
        summary = {
            "jobs_published": len(published),
            "jobs_applied": sum(s.applied for s in steps),
            "lost": lost,
            "applied_twice": twice,
            "duplicates_suppressed": int(self._final_snapshot["dup"]),
            "verify_matches": matches,
            "verify_mismatches": mismatches,
            "verify_parity": None
            if matches + mismatches == 0
            else matches / (matches + mismatches),
            "dead_lettered": int(self._final_snapshot["dlq"]),
            "poison_injected": self.poison_injected,
            "sqs_dlq_depth": dlq_depth,
            "repaired_from_repair_log": self.repaired,
            "secondary_publish_failures": int(self.metrics.total(m.SECONDARY_PUBLISH_FAILURES)),
            "producer_retries": self.publish_retries,
            "consumer_crashes": dict(self.crashes) | {"sqs": self._sqs_crashes()},
            "latency_ms": {
                route: {"p50": _percentile(v, 50), "p99": _percentile(v, 99)}
                for route, v in sorted(all_latency.items())
            },
            "ledger": self.store.kind,
            "jobs_applied_metric": int(self.metrics.total(m.JOBS_APPLIED)),
            "cloudwatch_jobs_applied": int(cw_applied),
            "cloudwatch_batches_dropped": self.cw_metrics.dropped_batches,
            "elapsed_seconds": round(elapsed, 1),
        }
        return {
            "ok": rehearsal_ok(steps),
            "config": asdict(self.config),
            "phases": [{**asdict(s), "verify_parity": s.parity} for s in steps],
            "summary": summary,
            "events": self.events,
        }

    def _sqs_crashes(self) -> int:
        return sum(1 for e in self.events if "sqs consumer killed" in e)


# --------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rehearse",
        help="run the whole migration locally (moto + Kafka broker) with faults; prove no job is lost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = RehearsalConfig()
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=d.phase_seconds,
        help="time spent in each phase step (default %(default)s)",
    )
    parser.add_argument(
        "--rate", type=float, default=d.rate, help="jobs published per second (default %(default)s)"
    )
    parser.add_argument(
        "--jobs-per-phase",
        type=int,
        help="jobs to publish in each phase step (sets --rate to this / --phase-seconds)",
    )
    parser.add_argument(
        "--batch", type=int, default=d.batch, help="jobs per publish call (default %(default)s)"
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=d.work_ms,
        help="simulated work per job in ms (default %(default)s)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=d.outage,
        help="Kafka outage in phase 2, seconds (default %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=d.drain_timeout,
        help="max wait for the last jobs (default %(default)s)",
    )
    parser.add_argument(
        "--postgres", action="store_true", help="use a local PostgreSQL ledger instead of SQLite"
    )
    parser.add_argument("--no-faults", action="store_true", help="do not inject faults")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--verbose", action="store_true", help="log warnings of the library")
    parser.set_defaults(handler=run_command)  # fmt: skip


def config_from_args(args: argparse.Namespace) -> RehearsalConfig:
    return RehearsalConfig(
        phase_seconds=args.phase_seconds,
        rate=args.rate if args.jobs_per_phase is None else args.jobs_per_phase / args.phase_seconds,
        batch=args.batch,
        work_ms=args.work_ms,
        outage=args.outage,
        drain_timeout=args.drain_timeout,
        postgres=args.postgres,
        faults=not args.no_faults,
    )


@contextlib.contextmanager
def _progress_display(enabled: bool, rehearsal_steps: int) -> Iterator[Callable[[str], None]]:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not enabled:
        yield lambda _msg: None
        return
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("rehearsal", total=rehearsal_steps + 2)

        def update(message: str) -> None:
            progress.update(task, description=message, advance=1)

        yield update


def _fmt_latency(step: Mapping[str, Any], route: str) -> str:
    value = step["latency_ms"].get(route)
    return "-" if value is None else f"{value['p50']:.0f} / {value['p99']:.0f}"


def print_report(report: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title="jobstream rehearsal: per phase step")
    for column in (
        "step", "phase", "published", "applied", "lost", "applied twice", "dup. suppressed",
        "verify parity", "dead-lettered", "sqs p50/p99 ms", "kafka p50/p99 ms",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for s in report["phases"]:
        parity = "-" if s["verify_parity"] is None else f"{s['verify_parity']:.2%}"
        table.add_row(
            str(s["step"]), str(s["phase"]), str(s["published"]), str(s["applied"]),
            str(s["lost"]), str(s["applied_twice"]), str(s["duplicates_suppressed"]), parity,
            str(s["dead_lettered"]), _fmt_latency(s, "sqs"), _fmt_latency(s, "kafka"),
        )  # fmt: skip
    console.print(table)
    summary = Table(title="summary", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for key, value in report["summary"].items():
        if key == "latency_ms":
            for route, v in value.items():
                summary.add_row(f"latency {route} p50 / p99 ms", f"{v['p50']:.0f} / {v['p99']:.0f}")
            continue
        if key == "verify_parity" and value is not None:
            value = f"{value:.2%}"
        summary.add_row(key.replace("_", " "), str(value))
    console.print(summary)
    for event in report["events"]:
        console.print(f"  - {event}")
    verdict = (
        "[bold green]OK: no job lost, none applied twice"
        if report["ok"]
        else "[bold red]FAILED: jobs lost or applied twice"
    )
    console.print(verdict)


def run_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    config = config_from_args(args)
    with _progress_display(sys.stderr.isatty(), len(config.steps)) as progress:
        report = Rehearsal(config, progress).run()
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=True))
    else:
        print_report(report)
    return 0 if report["ok"] else 1
