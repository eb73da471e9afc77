"""The stack and the worker agree on the environment: ``jobstream-worker`` is started with exactly
the variables the offline plan gives the Batch job definition plus the pipe's container overrides,
and the ECS task definition, and it processes a job in each mode.

Only values that name a place are changed, by value, never by name: the RDS Proxy endpoint and
port become the local TLS PostgreSQL's, the CA bundle ``system`` becomes the local test CA, the
pipe's dynamic paths (``$.body``, ``$.messageId``) are resolved against a real SQS record, and
AWS endpoints are redirected with ``AWS_ENDPOINT_URL`` (what the container's platform supplies:
credentials and the network). A variable renamed on one side makes the worker miss it and fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra.plan import Plan, PlanSet
from jobstream.contract import env
from jobstream.contract.exits import WorkerExit
from jobstream.contract.phases import phase
from jobstream.contract.routing import routing_for_phase
from jobstream.messaging import aws
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.publishers import KafkaPublisher
from rehearsal.servers import DUMMY_AWS_ENV, LocalPostgres, MotoServer, TansuBroker
from tests.runtime.messaging.conftest import create_topics
from tests.runtime.worker.conftest import REPO, WORKER

pytestmark = [pytest.mark.moto_server, pytest.mark.postgres]

JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
PIPE = "aws:pipes/pipe:Pipe"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
HANDLER = "tests.runtime.worker.handlers:double"
BATCH_PLACES: Mapping[str, str] = {
    "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/jobstream-dev-jobs",
    "topic": "jobstream.jobs",
    "bootstrap_brokers": "127.0.0.1:9",  # never contacted by a Batch job
    "consumer_group": "jobstream-ml",
}


def job_definition_environment(plan: Plan) -> dict[str, str]:
    container = json.loads(plan.one(JOB_DEFINITION).inputs["containerProperties"])
    return {e["name"]: e["value"] for e in container["environment"]}


def pipe_overrides(plan: Plan) -> dict[str, str]:
    target = plan.one(PIPE).inputs["targetParameters"]["batchJobParameters"]
    return {e["name"]: e["value"] for e in target["containerOverrides"]["environments"]}


def task_environment(plan: Plan) -> dict[str, str]:
    (container,) = json.loads(plan.one(TASK_DEFINITION).inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in container["environment"]}


def resolve_dynamic_paths(
    overrides: Mapping[str, str], record: Mapping[str, Any]
) -> dict[str, str]:
    """What the pipe does per message: ``$.field`` -> that field of the SQS record."""
    out: dict[str, str] = {}
    for name, path in overrides.items():
        assert path.startswith("$."), f"pipe override {name}={path!r} is not a dynamic path"
        field = path.removeprefix("$.")
        assert field in record, f"pipe override {name}: the SQS record has no {field!r}"
        out[name] = str(record[field])
    return out


class Local:
    """The places the plan names, as the local servers offer them (substituted by value)."""

    def __init__(self, plan: Plan, postgres: LocalPostgres, moto: MotoServer) -> None:
        self.by_value = {
            plan.outputs["dbProxyEndpoint"]: "127.0.0.1",
            "5432": str(postgres.port),
            env.DB_SSLROOTCERT_SYSTEM: str(postgres.ca_file),
        }
        self.platform = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            **DUMMY_AWS_ENV,
            "AWS_ENDPOINT_URL": moto.url,
        }

    def environment(self, *parts: Mapping[str, str]) -> dict[str, str]:
        merged: dict[str, str] = {}
        for part in parts:
            merged.update({k: self.by_value.get(v, v) for k, v in part.items()})
        return {**self.platform, **merged}


def prepare_database(postgres: LocalPostgres, name: str, user: str) -> None:
    """The database and user the plan names (trust auth stands in for the IAM token)."""
    with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(user)
                )
            )


def applied(postgres: LocalPostgres, database: str) -> dict[str, str]:
    info = postgres.conninfo.replace("dbname=postgres", f"dbname={database}")
    with psycopg.connect(info) as conn:
        try:
            return dict(conn.execute("SELECT job_id, consumer FROM jobstream_ledger").fetchall())
        except psycopg.errors.UndefinedTable:
            return {}


def publish_routing(moto: MotoServer, plan: Plan, **places: Any) -> None:
    routing = routing_for_phase(phase(plan.phase), stack=plan.stack, kafka_auth="none", **places)
    aws.client("ssm", region=plan.config.region, endpoint_url=moto.url).put_parameter(
        Name=plan.outputs["routingParameter"],
        Value=routing.to_json(),
        Type="String",
        Overwrite=True,
    )


@pytest.fixture
def dev3(plans: PlanSet) -> Plan:
    return plans.get("dev", 3)


@pytest.fixture
def local(dev3: Plan, tls_postgres: LocalPostgres, moto_server: MotoServer) -> Local:
    moto_server.reset()
    names = job_definition_environment(dev3)
    prepare_database(tls_postgres, names[env.DB_NAME], names[env.DB_USER])
    return Local(dev3, tls_postgres, moto_server)


def run_batch_job(
    local: Local, plan: Plan, job_env: Mapping[str, str], body: str
) -> subprocess.CompletedProcess[str]:
    record = {"body": body, "messageId": f"m-{uuid.uuid4().hex[:8]}"}
    environ = local.environment(
        job_env, resolve_dynamic_paths(pipe_overrides(plan), record), {env.HANDLER: HANDLER}
    )
    return subprocess.run(
        [str(WORKER)], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_variable_the_stack_sets_is_one_the_worker_reads(dev3: Plan) -> None:
    """A name only one side knows is drift: the worker would ignore it, or miss it."""
    known = {
        name for name, _ in __import__("jobstream.worker.cli", fromlist=["_VARIABLES"])._VARIABLES
    }
    for where, variables in (
        ("Batch job definition", job_definition_environment(dev3)),
        ("pipe container overrides", pipe_overrides(dev3)),
        ("ECS task definition", task_environment(dev3)),
    ):
        unknown = sorted(set(variables) - known)
        assert unknown == [], f"{where} sets {unknown}, which jobstream-worker does not read"


def test_a_batch_job_started_with_the_plans_environment_applies_its_message(
    dev3: Plan, local: Local, moto_server: MotoServer, tls_postgres: LocalPostgres
) -> None:
    publish_routing(moto_server, dev3, **BATCH_PLACES)
    body = Envelope.new("double", {"n": 21}, job_id=f"c-{uuid.uuid4().hex[:8]}").with_routes(
        ["sqs", "kafka"]
    )
    done = run_batch_job(local, dev3, job_definition_environment(dev3), body.to_json())
    assert done.returncode == WorkerExit.OK, done.stderr
    database = job_definition_environment(dev3)[env.DB_NAME]
    assert applied(tls_postgres, database)[body.job_id] == "sqs"


@pytest.mark.parametrize("variable", [env.DB_HOST, env.ROUTING_PARAMETER, env.CONSUMER])
def test_renaming_one_variable_on_the_stack_side_makes_the_worker_fail(
    dev3: Plan, local: Local, moto_server: MotoServer, variable: str
) -> None:
    """What this contract test exists for: it fails when the two sides disagree on a name."""
    publish_routing(moto_server, dev3, **BATCH_PLACES)
    job_env = job_definition_environment(dev3)
    job_env[f"{variable}_RENAMED"] = job_env.pop(variable)
    body = Envelope.new("double", {"n": 1}, job_id="renamed").with_routes(["sqs"])
    done = run_batch_job(local, dev3, job_env, body.to_json())
    assert done.returncode == WorkerExit.CONFIG, done.stderr
    assert f"{variable} = <unset>" in done.stderr


@pytest.mark.kafka
def test_the_consumer_service_started_with_the_task_definitions_environment_applies_a_job(
    dev3: Plan,
    local: Local,
    moto_server: MotoServer,
    tls_postgres: LocalPostgres,
    kafka_broker: TansuBroker,
) -> None:
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, topic, f"{topic}.dlq")
    publish_routing(
        moto_server,
        dev3,
        queue_url=f"{moto_server.url}/123456789012/jobs",
        topic=topic,
        dead_letter_topic=f"{topic}.dlq",
        bootstrap_brokers=kafka_broker.bootstrap,
        consumer_group=f"contract-{uuid.uuid4().hex[:6]}",
    )
    job = Envelope.new("double", {"n": 3}, job_id=f"k-{uuid.uuid4().hex[:8]}").with_routes(
        ["kafka"]
    )
    KafkaPublisher(producer_config(kafka_broker.bootstrap)).publish(topic, job)
    environ = local.environment(task_environment(dev3), {env.HANDLER: HANDLER})
    proc = subprocess.Popen([str(WORKER)], env=environ, stderr=subprocess.PIPE, text=True)
    database = task_environment(dev3)[env.DB_NAME]
    try:
        deadline = time.monotonic() + 40
        while job.job_id not in applied(tls_postgres, database) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read() if proc.stderr else ""
    assert applied(tls_postgres, database).get(job.job_id) == "kafka", log
    assert code == WorkerExit.OK, log
