"""The migration rehearsal: the stack's own resources (from its offline plan) on local servers, the
deployed processes (producers, the pipe and Batch stand-in running ``jobstream-worker`` once per
job, the ECS stand-in running it as the consumer service), real faults against real processes,
and every phase change made only after the preflight gates pass (the same gate code as
``jobstream preflight``, pointed at the local servers).

Steps (default): 1 -> 2 -> 3 -> 4 -> 3 -> 4 -> 3 -> 2 -> 3. Between two steps the rehearsal plays
the operator: it replays the producers' repair logs, puts back parked jobs after fixing their
cause (``redrive``), archives the poison messages it cannot fix, waits for the gates, then
writes the routing document of the next phase and starts or stops the consumer service as the
phase table says. At the end it drains everything and accounts for every published job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobstream.contract import env
from jobstream.contract import metrics as m
from jobstream.contract.names import Names
from jobstream.contract.phases import ResourceGroup, phase
from jobstream.contract.routing import Routing
from jobstream.messaging import aws
from jobstream.messaging.envelope import Envelope, EnvelopeError
from jobstream.messaging.kafka import ensure_topics, producer_config
from jobstream.messaging.metrics import CloudWatchMetrics
from rehearsal import handlers
from rehearsal.batch import BatchStandIn, Zygote
from rehearsal.config import RehearsalConfig
from rehearsal.msk import LagPublisher
from rehearsal.servers import (
    DUMMY_AWS_ENV,
    LocalPostgres,
    MotoServer,
    TansuBroker,
    TcpProxy,
)
from rehearsal.service import ServiceStandIn
from rehearsal.stack_model import StackModel

log = logging.getLogger("jobstream.rehearsal")

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
LAG_PERIOD_SECONDS = 5
"""The period of the gates' lag reads (the stand-in publishes every ``LAG_PERIOD_SECONDS``)."""
FINAL_OPERATOR_ROUNDS = (2, 4)
"""At the end, the operator's round (parked, fix, redrive, then drain) runs at least twice and
at most four times, until a round finds nothing parked: a read of the dead-letter topic under
load can end before a record that arrived late, which the next round then finds."""
UNMODELLED_GATES = ("MSK cluster", "Kafka topics", "routing bootstrap brokers")
"""Gates on the MSK control plane, which neither moto nor the local broker model (moto keeps a
cluster CREATING and has no bootstrap brokers or topic API): reported, not waited for."""


@dataclass
class StepReport:
    step: int
    phase: int
    seconds: float = 0.0
    published: int = 0
    gates: list[dict[str, Any]] = field(default_factory=list)
    gate_wait_seconds: float = 0.0


@dataclass
class Faults:
    counts: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)

    def note(self, kind: str, what: str, step: int) -> None:
        self.counts[kind] += 1
        self.events.append(f"step {step}: {what}")


POISON_MARK = re.compile(r"poison-(?:sqs|kafka)-\d+")
"""Each injected poison message carries its own mark, so the report can tell which poison was
archived from which place, and a poison parked twice (at-least-once delivery) from two."""


class Rehearsal:
    def __init__(
        self, config: RehearsalConfig, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.config = config
        self._progress = progress or (lambda _state: None)
        self.rng = random.Random(config.seed)
        self.faults = Faults()
        self.steps: list[StepReport] = []
        self.timings: dict[str, float] = {}
        self.parked: dict[str, list[dict[str, Any]]] = {
            "failed-jobs": [],
            "dlq": [],
            "dead-letter-topic": [],
        }
        self.poison_sent: dict[str, set[str]] = {place: set() for place in self.parked}
        """The marks of the poison injected, by the place it should end up archived from."""
        self.final_rounds = 0
        self.parked_places_at_end = 0
        """Places the last final round found something parked in (0 unless the rounds ran out)."""
        self._phase = 0
        self._step = 0
        self._stop_faults = threading.Event()
        self._stopped_services: list[ServiceStandIn] = []
        self.commands: list[dict[str, Any]] = []
        self.replayed = 0

    # ================================================================== setup

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        model = StackModel.from_stack(self.config.stack, self.config.steps, self.config.overrides)
        self.model = model
        self.names = Names(model.stack)
        with self._servers() as servers:
            self._servers_ = servers
            self._create_resources()
            self._start_processes()
            self.timings["setup"] = time.monotonic() - started
            try:
                for index, number in enumerate(self.config.steps):
                    self._run_step(index, number)
                finishing = time.monotonic()
                self._finish()
                self.timings["drain"] = time.monotonic() - finishing
            finally:
                stopping = time.monotonic()
                self._stop_processes()
                self.timings["stop"] = time.monotonic() - stopping
            report = self._report(time.monotonic() - started)
        return report

    @contextlib.contextmanager
    def _servers(self) -> Iterator[dict[str, Any]]:
        os.environ.update(DUMMY_AWS_ENV)
        self.workdir = Path(tempfile.mkdtemp(prefix="jobstream-rehearsal-"))
        self.control = self.workdir / "control"
        self.control.mkdir()
        os.chmod(self.workdir, 0o755)
        with contextlib.ExitStack() as stack:
            self._progress({"status": "starting moto, the Kafka broker, TLS PostgreSQL"})
            moto = MotoServer().start()
            stack.callback(moto.stop)
            kafka_proxy = TcpProxy(target_port=0)  # holds its port from here on
            stack.callback(kafka_proxy.stop)
            broker = TansuBroker(advertised_port=kafka_proxy.port).start()
            stack.callback(broker.stop)
            kafka_proxy.target_port = broker.port
            kafka_proxy.open()
            ssm_proxy = TcpProxy(moto.port).open()
            stack.callback(ssm_proxy.stop)
            postgres = LocalPostgres(tls=True).start()
            stack.callback(postgres.stop)
            os.environ["AWS_ENDPOINT_URL"] = moto.url
            stack.callback(os.environ.pop, "AWS_ENDPOINT_URL", None)
            yield {
                "moto": moto,
                "broker": broker,
                "kafka_proxy": kafka_proxy,
                "ssm_proxy": ssm_proxy,
                "postgres": postgres,
                "bootstrap": f"127.0.0.1:{kafka_proxy.port}",
                "ssm_url": f"http://127.0.0.1:{ssm_proxy.port}",
            }
            if not self.config.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def client(self, service: str) -> Any:
        return aws.client(
            service,
            region=self.model.region,
            endpoint_url=self._servers_["moto"].url,
            max_attempts=2,
        )

    def _queue_url(self, name: str) -> str:
        return f"{self._servers_['moto'].url}/{ACCOUNT}/{name}"

    def _create_resources(self) -> None:
        """What the plan creates, on moto and the broker: queues with the plan's attributes and
        redrive policy, the failed-jobs capture (queue, rule with the plan's pattern, target),
        the topics with the plan's partitions, the database and user the job definition names,
        and the records the rollback gates look for (Batch, pipe, ECS, RDS)."""
        model, sqs = self.model, self.client("sqs")
        dlq = sqs.create_queue(
            QueueName=model.dead_letter_queue.name,
            Attributes=dict(model.dead_letter_queue.attributes),
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sqs.create_queue(
            QueueName=model.job_queue.name,
            Attributes={
                **model.job_queue.attributes,
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": str(model.max_receive_count),
                    }
                ),
            },
        )
        parked = sqs.create_queue(
            QueueName=model.failed_jobs_queue.name,
            Attributes=dict(model.failed_jobs_queue.attributes),
        )["QueueUrl"]
        parked_arn = sqs.get_queue_attributes(QueueUrl=parked, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = self.client("events")
        events.put_rule(
            Name=model.failed_jobs_rule, EventPattern=json.dumps(model.failed_jobs_pattern)
        )
        events.put_targets(
            Rule=model.failed_jobs_rule, Targets=[{"Id": "failed-jobs", "Arn": parked_arn}]
        )
        broker: TansuBroker = self._servers_["broker"]
        for topic in model.topics:
            ensure_topics(
                {"bootstrap.servers": f"127.0.0.1:{broker.port}"},
                [topic.name],
                partitions=topic.partitions,
            )
        self._prepare_database()
        self._seed_control_plane()

    def _prepare_database(self) -> None:
        import psycopg
        from psycopg import sql

        pg: LocalPostgres = self._servers_["postgres"]
        name, user = (
            self.model.job_environment[env.DB_NAME],
            self.model.job_environment[env.DB_USER],
        )
        with psycopg.connect(pg.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(user)
                )
            )
        with psycopg.connect(self._db_conninfo(), autocommit=True) as conn:
            conn.execute(handlers.RESULTS_DDL)
        self.database = name

    def _db_conninfo(self) -> str:
        pg: LocalPostgres = self._servers_["postgres"]
        user = self.model.job_environment[env.DB_USER]
        return pg.conninfo.replace(
            "dbname=postgres", f"dbname={self.model.job_environment[env.DB_NAME]}"
        ).replace(f"user={pg.user}", f"user={user}")

    def _seed_control_plane(self) -> None:
        """Records for the gates that check what a phase needs exists (moto keeps them)."""
        names, region = self.names, self.model.region
        role = self.client("iam").create_role(
            RoleName="rehearsal",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.10.{i}.0/24", AvailabilityZone=f"{region}{az}"
            )["Subnet"]["SubnetId"]
            for i, az in enumerate("ab")
        ]
        rds = self.client("rds")
        rds.create_db_instance(
            DBInstanceIdentifier=names.db_instance, DBInstanceClass="db.t4g.micro", Engine="postgres",
            MasterUsername="jobstream_admin", MasterUserPassword="not-a-real-password", AllocatedStorage=20,
        )  # fmt: skip
        rds.create_db_proxy(
            DBProxyName=names.db_proxy, EngineFamily="POSTGRESQL", RoleArn=role, VpcSubnetIds=subnets,
            Auth=[{"AuthScheme": "SECRETS", "SecretArn": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:db", "IAMAuth": "REQUIRED"}],
            RequireTLS=True,
        )  # fmt: skip
        batch = self.client("batch")
        compute = batch.create_compute_environment(
            computeEnvironmentName=f"{names.batch_compute_environment_prefix}rehearsal",
            type="UNMANAGED", state="ENABLED", serviceRole=role,
        )["computeEnvironmentArn"]  # fmt: skip
        batch.create_job_queue(
            jobQueueName=names.batch_job_queue, state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": compute}],
        )  # fmt: skip
        batch.register_job_definition(
            jobDefinitionName=names.batch_job_definition, type="container",
            containerProperties={"image": "ml:1", "vcpus": 1, "memory": 2048},
        )  # fmt: skip
        self.client("pipes").create_pipe(
            Name=names.pipe, Source=f"arn:aws:sqs:{region}:{ACCOUNT}:{names.job_queue}",
            Target=self.model.batch_job_queue_arn, RoleArn=role, DesiredState="RUNNING",
        )  # fmt: skip
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName=names.ecs_cluster)
        ecs.register_task_definition(
            family=names.ecs_service,
            containerDefinitions=[{"name": "consumer", "image": "ml:1", "memory": 2048}],
        )
        ecs.create_service(
            cluster=names.ecs_cluster,
            serviceName=names.ecs_service,
            taskDefinition=names.ecs_service,
            desiredCount=1,
        )

    # ================================================================== environments

    def _local(self, value: str) -> str:
        """A value of the plan that names a place, as the local servers offer it."""
        pg: LocalPostgres = self._servers_["postgres"]
        return {
            self.model.db_proxy_endpoint: "127.0.0.1",
            str(env.DB_PORT_DEFAULT): str(pg.port),
            env.DB_SSLROOTCERT_SYSTEM: str(pg.ca_file),
        }.get(value, value)

    def _image(self) -> dict[str, str]:
        """What the rehearsal's image sets (the handler, the result writer) and what the platform
        gives a container (credentials, the network: AWS endpoints on the local servers)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            **DUMMY_AWS_ENV,
            "AWS_ENDPOINT_URL": self._servers_["moto"].url,
            env.HANDLER: "rehearsal.handlers:handle",
            env.RESULT_WRITER: "rehearsal.handlers:record_result",
            env.ROUTING_TTL: str(self.config.routing_ttl),
            env.LOG_LEVEL: "WARNING",
            handlers.CONTROL_DIR: str(self.control),
        }

    def _job_environment(self, overrides: Mapping[str, str]) -> dict[str, str]:
        job = {k: self._local(v) for k, v in self.model.job_environment.items()}
        return {**self._image(), **job, **overrides}

    def _service_environment(self) -> dict[str, str]:
        task = {k: self._local(v) for k, v in self.model.service_environment.items()}
        # The tasks read SSM through a proxy the rehearsal can cut (SSM refresh failures).
        return {
            **self._image(),
            **task,
            "AWS_ENDPOINT_URL_SSM": self._servers_["ssm_url"],
            env.KAFKA_SESSION_TIMEOUT: str(self.config.kafka_session_timeout_ms),
        }

    def _routing(self, number: int) -> Routing:
        """The plan's routing document of the phase, with its places on the local servers."""
        planned = self.model.routings[number]
        doc = planned.to_dict()
        if planned.queue_url:
            doc["queue_url"] = self._queue_url(self.model.job_queue.name)
        if planned.dlq_url:
            doc["dlq_url"] = self._queue_url(self.model.dead_letter_queue.name)
        if planned.bootstrap_brokers:
            doc["bootstrap_brokers"] = self._servers_["bootstrap"]
            doc["kafka_auth"] = "none"  # the local broker has no MSK IAM (OAUTHBEARER)
        return Routing.from_dict(doc)

    def _write_routing(self, number: int) -> None:
        self.client("ssm").put_parameter(
            Name=self.model.routing_parameter,
            Value=self._routing(number).to_json(),
            Type="String",
            Overwrite=True,
        )

    # ================================================================== processes

    def _start_processes(self) -> None:
        first = self.config.steps[0]
        self._write_routing(first)
        self._phase = first
        self.zygote = Zygote(self._image(), job_log=self.workdir / "batch-jobs.log")
        self.batch = BatchStandIn(
            self.model,
            sqs=self.client("sqs"),
            events=self.client("events"),
            queue_url=self._queue_url(self.model.job_queue.name),
            job_environment=self._job_environment,
            zygote=self.zygote,
            control_dir=self.control,
            compute_type=self.model.compute_type,
        ).start()
        self.service: ServiceStandIn | None = None
        self.lag = LagPublisher(
            bootstrap=f"127.0.0.1:{self._servers_['broker'].port}",
            topic=self.model.jobs_topic.name,
            partitions=self.model.jobs_topic.partitions,
            group=self._routing(max(self.config.steps)).consumer_group or "jobstream-ml",
            cluster_name=self.names.kafka_cluster,
            cloudwatch=self.client("cloudwatch"),
            interval=LAG_PERIOD_SECONDS,
        ).start()
        self.producers: list[dict[str, Any]] = []
        for i in range(self.config.producers):
            self._start_producer(i)
        self._set_rates(first)
        self._apply_service(first)
        self.metrics = CloudWatchMetrics(self.client("cloudwatch"), self.model.stack, interval=2.0)

    def _start_producer(self, slot: int, incarnation: int = 0) -> None:
        import subprocess
        import sys

        base = self.workdir / f"producer-{slot}"
        control = base.with_suffix(".control.json")
        spec = {
            "moto_url": self._servers_["moto"].url,
            "ssm_url": self._servers_["ssm_url"],
            "region": self.model.region,
            "stack": self.model.stack,
            "routing_parameter": self.model.routing_parameter,
            "repair_log": str(base.with_suffix(".repair.jsonl")),
            "journal": str(base.with_suffix(".journal.jsonl")),
            "control": str(control),
            "prefix": f"p{slot}{chr(ord('a') + incarnation)}",
            "ttl": self.config.routing_ttl,
            "seed": self.config.seed * 100 + slot * 10 + incarnation,
        }
        spec_path = base.with_suffix(f".{incarnation}.spec.json")
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen(
            [sys.executable, "-m", "rehearsal.producer", str(spec_path)],
            env={**os.environ, **self._image()},
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / f"producer-{slot}.log").open("a"),
        )
        entry = {
            "slot": slot,
            "proc": proc,
            "control": control,
            "spec": spec,
            "incarnation": incarnation,
        }
        if slot < len(self.producers):
            self.producers[slot] = entry
        else:
            self.producers.append(entry)

    def _control_producers(self, **values: Any) -> None:
        for p in self.producers:
            path: Path = p["control"]
            current = json.loads(path.read_text()) if path.exists() else {}
            current.update(values)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(current))
            tmp.replace(path)

    def _set_rates(self, number: int) -> None:
        kafka_primary = phase(number).primary_route.value == "kafka"
        total = self.config.kafka_rate if kafka_primary else self.config.sqs_rate
        faults: dict[str, float] = {}
        if self.config.faults:
            faults = {"intermittent": 0.02, "kill-in-tx": 0.004, "kill-after-commit": 0.004}
            if not kafka_primary:
                faults["permanent"] = 0.004
        self._control_producers(
            rate=total / max(1, len(self.producers)),
            batch=10 if kafka_primary else 5,
            faults=faults,
            partial_batch=0.03 if self.config.faults and not kafka_primary else 0.0,
        )

    def _apply_service(self, number: int) -> None:
        wanted = phase(number).has(ResourceGroup.CONSUMER_SERVICE)
        if wanted and self.service is None:
            tasks = self.config.consumers or max(3, self.model.service_desired_count)
            self.service = ServiceStandIn(
                self._service_environment(), tasks, self.workdir / "service.log"
            ).start()
        elif not wanted and self.service is not None:
            self.service.stop()
            self._stopped_services.append(self.service)
            self.service = None

    def _stop_processes(self) -> None:
        self._stop_faults.set()
        self._control_producers(stop=True)
        for p in self.producers:
            with contextlib.suppress(Exception):
                p["proc"].wait(30)
        if self.service is not None:
            self.service.stop()
            self._stopped_services.append(self.service)
            self.service = None
        self.batch.stop()
        self.zygote.close()
        self.lag.stop()
        self.metrics.close()

    # ================================================================== steps

    def _run_step(self, index: int, number: int) -> None:
        self._step = index + 1
        report = StepReport(step=self._step, phase=number)
        if index > 0:
            waited = time.monotonic()
            report.gates = self._change_phase(self._phase, number)
            report.gate_wait_seconds = time.monotonic() - waited
        self.steps.append(report)
        self._phase_began = time.time()
        started = time.monotonic()
        schedule = self._fault_schedule(index, number) if self.config.faults else []
        injector = threading.Thread(target=self._inject, args=(schedule, started), daemon=True)
        injector.start()
        while time.monotonic() - started < self.config.step_seconds:
            self._progress(self._state())
            time.sleep(1.0)
        injector.join()
        report.seconds = time.monotonic() - started

    def _state(self) -> dict[str, Any]:
        return {
            "step": self._step,
            "steps": len(self.config.steps),
            "phase": self._phase,
            "published": self._published_count(),
            "applied": self._applied_count(),
            "parked": sum(len(v) for v in self.parked.values()),
            "faults": dict(self.faults.counts),
            "batch": asdict(self.batch.counters),
        }

    def _published_count(self) -> int:
        return sum(1 for _ in self._journal_records("published"))

    def _applied_count(self) -> int:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(self._db_conninfo()) as conn:
            row = conn.execute("SELECT count(DISTINCT job_id) FROM rehearsal_results").fetchone()
            return int(row[0]) if row else 0
        return 0

    def _journal_records(self, kind: str) -> Iterator[dict[str, Any]]:
        for path in sorted(self.workdir.glob("producer-*.journal.jsonl")):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("kind") == kind:
                        yield record

    # ================================================================== faults

    def _fault_schedule(self, index: int, number: int) -> list[tuple[float, Callable[[], None]]]:
        first = self.config.steps.index(number) == index
        plan: list[tuple[float, Callable[[], None]]] = []
        sqs_primary = phase(number).primary_route.value == "sqs"
        if sqs_primary:
            plan += [(f, self._interrupt_batch_job) for f in (0.15, 0.35, 0.55, 0.75, 0.9)]
        if number == 1 and first:
            plan += [(0.3, self._sqs_poison), (0.6, self._sqs_poison)]
        if number == 2 and first:
            plan.append((0.25, self._broker_outage))
        if number == 3 and first:
            # Phase 3 dual-writes too. A killed producer loses the metrics it had not flushed, so
            # its kill is kept out of phase 2, whose exit gate compares JobsPublished per route
            # over a window of seconds here (over days, as operators use it, it would not show).
            plan += [
                (0.25, self._kill_consumer),
                (0.4, self._kill_producer),
                (0.55, self._ssm_outage),
                (0.8, self._kill_consumer),
            ]
        if number == 4 and first:
            plan += [
                (0.2, self._kill_consumer),
                (0.3, self._broker_outage),
                (0.55, self._kafka_poison),
                (0.6, self._kafka_poison),
                (0.8, self._kill_consumer),
            ]
        if not first and phase(number).has(ResourceGroup.CONSUMER_SERVICE):
            plan.append((0.5, self._kill_consumer))
        return sorted(plan, key=lambda item: item[0])

    def _inject(self, schedule: list[tuple[float, Callable[[], None]]], started: float) -> None:
        for at, fault in schedule:
            jitter = self.rng.uniform(-0.05, 0.05)
            delay = started + (at + jitter) * self.config.step_seconds - time.monotonic()
            if delay > 0 and self._stop_faults.wait(delay):
                return
            try:
                fault()
            except Exception as exc:
                log.warning("fault %s failed: %r", getattr(fault, "__name__", fault), exc)

    def _interrupt_batch_job(self) -> None:
        job = self.batch.interrupt_random(self.rng, wait_seconds=0.1 * self.config.step_seconds)
        if job is not None:
            self.faults.note(
                "batch-job-sigkill", f"SIGKILL of Batch job {job} (Spot interruption)", self._step
            )

    def _kill_consumer(self) -> None:
        if self.service is None:
            return
        pid = self.service.kill_random(self.rng)
        if pid is not None:
            self.faults.note("consumer-sigkill", f"SIGKILL of consumer task {pid}", self._step)

    def _sqs_poison(self) -> None:
        mark = f"poison-sqs-{self.faults.counts['poison-sqs'] + 1}"
        self.client("sqs").send_message(
            QueueUrl=self._queue_url(self.model.job_queue.name),
            MessageBody=f"{{this is not an envelope ({mark})",
        )
        self.poison_sent["failed-jobs"].add(mark)
        self.faults.note("poison-sqs", f"a poison message ({mark}) sent to SQS", self._step)

    def _kafka_poison(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(producer_config(self._servers_["bootstrap"], extra={"log_level": 0}))
        mark = f"poison-kafka-{self.faults.counts['poison-kafka'] + 1}"
        doc = json.dumps({"schema_version": 99, "job_id": mark})
        producer.produce(self.model.jobs_topic.name, key=b"poison", value=doc.encode())
        producer.flush(10)
        self.poison_sent["dead-letter-topic"].add(mark)
        self.faults.note(
            "poison-kafka", f"a poison message ({mark}, schema 99) sent to Kafka", self._step
        )

    def _broker_outage(self) -> None:
        proxy: TcpProxy = self._servers_["kafka_proxy"]
        kind = "broker-outage-kafka-primary" if self._phase >= 4 else "broker-outage-dual-write"
        self.faults.note(
            kind, f"Kafka connections cut for {self.config.outage_seconds:g} s", self._step
        )
        proxy.close()
        time.sleep(self.config.outage_seconds)
        proxy.open()

    def _ssm_outage(self) -> None:
        proxy: TcpProxy = self._servers_["ssm_proxy"]
        seconds = 4 * self.config.routing_ttl + 3
        self.faults.note(
            "ssm-outage", f"SSM cut for the producers and consumers for {seconds:g} s", self._step
        )
        proxy.close()
        time.sleep(seconds)
        proxy.open()

    def _kill_producer(self) -> None:
        import signal

        victim = self.producers[0]
        victim["proc"].send_signal(signal.SIGKILL)
        victim["proc"].wait(10)
        self.faults.note("producer-sigkill", "SIGKILL of producer 0 during dual-write", self._step)
        time.sleep(0.5)
        self._start_producer(0, victim["incarnation"] + 1)
        self._set_rates(self._phase)

    # ================================================================== the operator

    def _change_phase(self, current: int, target: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.config.gate_timeout
        checks: list[dict[str, Any]] = []
        while self.config.gates:
            self._operate(current)
            checks = self._gates(current, target)
            blocking = [c for c in checks if c["blocking"] and c["verdict"] != "pass"]
            if not blocking:
                break
            if time.monotonic() > deadline:
                for c in blocking:
                    c["forced"] = True
                self.faults.events.append(
                    f"step {self._step}: gates to {target} did not pass in {self.config.gate_timeout:g} s: "
                    + "; ".join(f"{c['name']} ({c['figure']})" for c in blocking)
                )
                break
            self._progress(
                {**self._state(), "status": f"waiting for the gates {current} -> {target}"}
            )
            time.sleep(2.0)
        self._write_routing(target)
        self._phase = target
        self._set_rates(target)
        self._apply_service(target)
        return checks

    def _gates(self, current: int, target: int) -> list[dict[str, Any]]:
        import datetime as dt

        from ops.aws_clients import Aws
        from ops.preflight import gates
        from ops.probes import StackContext

        # The window ends a few seconds ago: a copy still on its way to Kafka, or a metric still
        # in a producer's buffer (flushed every 2 s), is not a missing one. Over the days an
        # operator's window spans, those seconds do not matter; over a rehearsal step they do.
        settle = 6.0
        ctx = StackContext(
            cfg=self.model.config,
            names=self.names,
            aws=Aws(self.model.region, None),
            now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settle),
        )
        # ... and starts once every producer has read the phase (its routing TTL, twice, and a
        # batch): before that some still published as in the phase before.
        warmup = 2 * self.config.routing_ttl + 2.0
        since = max(5.0, time.time() - settle - (self._phase_began + warmup))
        args = argparse.Namespace(
            window_hours=since / 3600,
            min_dual_write_ratio=0.99,
            min_parity=0.999,
            max_lag=1000,
            # The lag gate looks back over a trailing window (an operator's last 15 minutes): one
            # step here. Anchored at the phase's start instead, a backlog the phase began with
            # would stay in the window for as long as the operator waits.
            lag_window_minutes=min(since, self.config.step_seconds) / 60,
            # The lag stand-in publishes high-resolution data every few seconds: read in periods
            # of those seconds, as a 15-second window needs.
            lag_period_seconds=LAG_PERIOD_SECONDS,
            drain_window_hours=1 / 60,
        )
        checks = []
        for c in gates(ctx, args, current, target):
            doc = c.to_json()
            doc["blocking"] = not c.name.startswith(UNMODELLED_GATES)
            checks.append(doc)
        return checks

    def _operate(self, current: int) -> int:
        """Before a change, what the runbook asks of the operator, with the operator's own
        commands (in this process, against the local servers): replay the producers' repair
        logs (``jobstream replay``), see what is parked (``jobstream parked``), fix the cause of
        each parked job (the rehearsal's handler heals a job once ``fixed-<job id>`` exists),
        and put the jobs back (``jobstream redrive``), archiving the poison it cannot fix. The
        number of places ``parked`` found something in."""
        if phase(current).has(ResourceGroup.KAFKA):
            for path in sorted(self.workdir.glob("producer-*.repair.jsonl")):
                doc = self._command(
                    "replay", "--repair-log", str(path), "--pending-older-than", "5"
                )
                delivered = int(doc.get("delivered", 0))
                if delivered:
                    self.replayed += delivered
                    self.faults.events.append(
                        f"step {self._step}: jobstream replay delivered {delivered} Kafka copies "
                        f"from {path.name}"
                    )
        parked = self._command("parked")
        places = [p["place"] for p in parked.get("places", []) if p.get("count")]
        for place in places:
            plan = self._command("redrive", "--source", place, "--dry-run", "--kafka-timeout", "1")
            for item in plan.get("would_move", []):
                (self.control / f"fixed-{item['job_id']}").touch()
            done = self._command(
                "redrive", "--source", place, "--yes", "--kafka-timeout", "1",
                "--archive-poison", str(self.workdir / "poison-archive.jsonl"),
            )  # fmt: skip
            for item in done.get("moved", []):
                self.parked[place].append(
                    {
                        "job": item["job_id"],
                        "poison": False,
                        "reason": item["reason"],
                        "step": self._step,
                    }
                )
            for item in done.get("archived", []):
                self.parked[place].append(
                    {"job": None, "poison": True, "reason": item["reason"], "step": self._step}
                )
        return len(places)

    def _command(self, *argv: str) -> dict[str, Any]:
        """``jobstream <argv> --stack S --json`` in this process; its one JSON object."""
        import io

        from ops import cli

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main([argv[0], "--stack", self.model.stack, "--json", *argv[1:]])
        try:
            doc: dict[str, Any] = json.loads(out.getvalue() or "{}")
        except ValueError:
            doc = {"output": out.getvalue()}
        doc.setdefault("exit_code", code)
        self.commands.append({"command": " ".join(argv), "exit_code": code, "step": self._step})
        return doc

    # ================================================================== the end

    def _finish(self) -> None:
        self._progress({**self._state(), "status": "draining"})
        self._control_producers(rate=0)
        time.sleep(2.0)
        least, most = FINAL_OPERATOR_ROUNDS
        for round_number in range(1, most + 1):
            found = self._operate(self._phase)
            self._drain()
            self.final_rounds, self.parked_places_at_end = round_number, found
            if round_number >= least and not found:
                break

    def _kafka_done(self, lag: int | None, state: Mapping[str, Any]) -> bool:
        """Nothing left for the Kafka consumers to apply: no lag, or (SQS primary) the copies
        left are the dual-written ones that SQS applies, each published job already applied.
        The local broker sometimes keeps a re-formed consumer group without partitions for
        minutes (docs/messaging.md, "Tansu quirks"); waiting for its lag then would only wait
        for that, so the verify copies it holds are counted as left in ``kafka_lag_at_end``."""
        if not lag:
            return True
        if phase(self._phase).primary_route.value == "kafka":
            return False
        return int(state["applied"]) >= int(state["published"])

    def _drain(self) -> None:
        sqs = self.client("sqs")
        deadline = time.monotonic() + self.config.drain_timeout
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            attributes = sqs.get_queue_attributes(
                QueueUrl=self._queue_url(self.model.job_queue.name),
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            depth = sum(int(v) for v in attributes.values())
            lag = self.lag.lag() if self.service is not None else 0
            # One reading of the journals and the results per poll, for the check and the line.
            state = self._state()
            done = depth == 0 and self.batch.busy() == 0 and self._kafka_done(lag, state)
            quiet = quiet + 1 if done else 0
            self._progress({**state, "status": f"draining: queue {depth}, lag {lag}"})
            time.sleep(1.0)

    # ================================================================== the report

    def _poison_archived(self) -> dict[str, set[str]]:
        """The marks of the poison ``redrive --archive-poison`` archived, by place (a poison
        without a mark counts under its own archive line, so it cannot go unnoticed)."""
        found: dict[str, set[str]] = {place: set() for place in self.parked}
        path = self.workdir / "poison-archive.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                place = str(record["place"])
            except (ValueError, KeyError, TypeError):
                found.setdefault("(unreadable)", set()).add(f"archive line {number}")
                continue
            mark = POISON_MARK.search(str(record.get("body") or ""))
            found.setdefault(place, set()).add(
                mark.group(0) if mark else f"unmarked archive line {number}"
            )
        return found

    def _results(self) -> dict[str, tuple[int, str, float]]:
        """job id -> (result rows, consumer of the first, latency in ms of the first)."""
        import psycopg

        with psycopg.connect(self._db_conninfo()) as conn:
            rows = conn.execute(
                "SELECT job_id, count(*), min(consumer), min(applied_at - published_at) "
                "FROM rehearsal_results GROUP BY job_id"
            ).fetchall()
        return {str(j): (int(n), str(c), float(lat) * 1000.0) for j, n, c, lat in rows}

    def _metric_total(self, name: str, **dimensions: str) -> float:
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        stats = self.client("cloudwatch").get_metric_statistics(
            Namespace=m.NAMESPACE,
            MetricName=name,
            Dimensions=[{"Name": "Stack", "Value": self.model.stack}]
            + [{"Name": k, "Value": v} for k, v in dimensions.items()],
            StartTime=now - dt.timedelta(hours=3),
            EndTime=now + dt.timedelta(minutes=5),
            Period=3600,
            Statistics=["Sum"],
        )
        return float(sum(p.get("Sum", 0.0) for p in stats["Datapoints"]))

    def _report(self, seconds: float) -> dict[str, Any]:
        published: dict[str, dict[str, Any]] = {}
        for record in self._journal_records("published"):
            published.setdefault(record["job"], record)
        intents = {r["job"] for r in self._journal_records("intent")}
        results = self._results()
        lost = sorted(j for j in published if j not in results)
        twice = sorted(j for j, (rows, _c, _l) in results.items() if rows > 1)
        unconfirmed = intents - set(published)
        latency: dict[str, list[float]] = defaultdict(list)
        for job, (_rows, consumer, ms) in results.items():
            if job in published:
                latency[consumer].append(max(0.0, ms))

        expected_jobs: set[str] = {j for j, r in published.items() if r.get("fault") == "permanent"}
        for job in self.batch.failed_jobs:
            killed = job.attempts and job.attempts[-1]["container"]["exitCode"] == 137
            job_id = self._job_of(job.body) if killed else None
            if job_id is not None:
                expected_jobs.add(job_id)
        parked_jobs: set[str] = {
            str(r["job"]) for records in self.parked.values() for r in records if r["job"]
        }
        archived = self._poison_archived()
        poison_parked = {place: len(marks) for place, marks in archived.items()}
        poison_copies = {
            place: sum(1 for r in records if r["poison"]) for place, records in self.parked.items()
        }
        parked_ok = parked_jobs == expected_jobs and archived == self.poison_sent
        matches, mismatches = (
            self._metric_total(m.VERIFY_MATCHES),
            self._metric_total(m.VERIFY_MISMATCHES),
        )
        ok = (
            not lost
            and not twice
            and parked_ok
            and not any(c.get("forced") for s in self.steps for c in s.gates)
        )
        services = self._stopped_services
        return {
            "ok": ok,
            "stack": self.model.stack,
            "seconds": round(seconds, 1),
            "kafka_lag_at_end": self.lag.last_lag,
            "lag_readers_replaced": self.lag.readers_replaced,
            "timings_seconds": {
                # Where the wall time went: the servers and processes starting, the steps on
                # the clock, the operator waiting for gates, the final drain, the stop.
                "setup": round(self.timings.get("setup", 0.0), 1),
                "steps": round(sum(s.seconds for s in self.steps), 1),
                "gate_waits": round(sum(s.gate_wait_seconds for s in self.steps), 1),
                "drain": round(self.timings.get("drain", 0.0), 1),
                "stop": round(self.timings.get("stop", 0.0), 1),
            },
            "steps": [
                {
                    "step": s.step,
                    "phase": s.phase,
                    "seconds": round(s.seconds, 1),
                    "gate_wait_seconds": round(s.gate_wait_seconds, 1),
                    "gates": s.gates,
                }
                for s in self.steps
            ],
            "summary": {
                "published": len(published),
                "applied": sum(1 for j in published if j in results),
                "lost": len(lost),
                "applied_twice": len(twice),
                "unconfirmed_publishes": len(unconfirmed),
                "unconfirmed_applied": sum(1 for j in unconfirmed if j in results),
                "parked": {place: len(records) for place, records in self.parked.items()},
                "parked_poison": poison_parked,
                "parked_poison_copies": poison_copies,
                "final_operator_rounds": self.final_rounds,
                "parked_places_at_end": self.parked_places_at_end,
                "parked_jobs_expected": len(expected_jobs),
                "parked_jobs_seen": len(parked_jobs),
                "parked_as_expected": parked_ok,
                "parked_reasons": dict(
                    Counter(r["reason"] for rs in self.parked.values() for r in rs)
                ),
                "duplicates_suppressed": self._metric_total(m.DUPLICATES_SKIPPED, Consumer="sqs")
                + self._metric_total(m.DUPLICATES_SKIPPED, Consumer="kafka"),
                "verify_matches": matches,
                "verify_mismatches": mismatches,
                "verify_deferred": self._metric_total(m.VERIFY_DEFERRED),
                "verify_parity": None
                if matches + mismatches == 0
                else matches / (matches + mismatches),
                "routing_stale_reports": self._metric_total(m.ROUTING_STALE),
                "repair_log_replayed": self.replayed,
                "operator_commands": dict(Counter(c["command"].split()[0] for c in self.commands)),
                "latency_ms": {
                    route: {"p50": _percentile(v, 50), "p99": _percentile(v, 99), "jobs": len(v)}
                    for route, v in sorted(latency.items())
                },
                "batch": asdict(self.batch.counters),
                "consumer_service": {
                    "tasks_started": sum(s.counters.started for s in services),
                    "tasks_killed": sum(s.counters.killed for s in services),
                    "stop_seconds_max": round(
                        max((x for s in services for x in s.counters.stop_seconds), default=0.0), 2
                    ),
                },
            },
            "faults": dict(self.faults.counts),
            "events": self.faults.events,
            "lost_jobs": lost[:20],
            "applied_twice_jobs": twice[:20],
            "parked_unexpected": sorted(parked_jobs - expected_jobs)[:20],
            "parked_missing": sorted(expected_jobs - parked_jobs)[:20],
            "poison_not_archived": {
                place: sorted(marks - archived.get(place, set()))
                for place, marks in self.poison_sent.items()
            },
            "poison_archived_unexpectedly": {
                place: sorted(marks - self.poison_sent.get(place, set()))
                for place, marks in archived.items()
            },
        }

    @staticmethod
    def _job_of(body: str) -> str | None:
        try:
            return Envelope.from_json(body).job_id
        except EnvelopeError:
            return None


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)
