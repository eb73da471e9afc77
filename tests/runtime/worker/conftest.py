"""A worker rig: the environment the stack gives ``jobstream-worker``, pointed at the session's
local servers (moto's server for SSM and CloudWatch, TLS-only PostgreSQL standing in for RDS
Proxy, the Tansu broker), and a way to run the installed console script as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql

from jobstream.contract import env
from jobstream.contract.names import Names
from jobstream.contract.phases import phase
from jobstream.contract.routing import routing_for_phase
from jobstream.messaging import aws
from rehearsal.servers import DUMMY_AWS_ENV, LocalPostgres, MotoServer

REPO = Path(__file__).resolve().parents[3]
WORKER = Path(sys.executable).parent / "jobstream-worker"
REGION = "us-east-1"
STACK = "worker-test"


@dataclass
class WorkerRig:
    moto: MotoServer
    postgres: LocalPostgres
    database: str
    bootstrap: str | None = None
    topic: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return aws.client(service, region=REGION, endpoint_url=self.moto.url, max_attempts=2)

    def set_phase(self, number: int) -> None:
        names = Names(STACK)
        routing = routing_for_phase(
            phase(number),
            stack=STACK,
            queue_url=None if number == 5 else f"{self.moto.url}/123456789012/{names.job_queue}",
            topic=self.topic if number > 1 else None,
            dead_letter_topic=f"{self.topic}.dlq" if number > 1 and self.topic else None,
            bootstrap_brokers=self.bootstrap if number > 1 else None,
            consumer_group=f"ml-{self.database}" if number > 1 else None,
            kafka_auth="none",
        )
        self.client("ssm").put_parameter(
            Name=names.routing_parameter, Value=routing.to_json(), Type="String", Overwrite=True
        )

    def run(
        self, extra: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WORKER)],
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, extra: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(WORKER)],
            env={**self.env, **(extra or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sql(self, query: LiteralString, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            self.postgres.conninfo.replace("dbname=postgres", f"dbname={self.database}")
        ) as conn:
            return conn.execute(query, params).fetchall()

    def applied(self) -> dict[str, str]:
        """job id -> consumer for every job in the ledger (empty before the worker made it)."""
        try:
            rows = self.sql("SELECT job_id, consumer FROM jobstream_ledger")
        except psycopg.errors.UndefinedTable:
            return {}
        return {str(j): str(c) for j, c in rows}


def base_environment(rig: WorkerRig, consumer: str) -> dict[str, str]:
    """What the stack sets (contract names), with the local servers' addresses as values."""
    names = Names(STACK)
    stack_env = env.worker_environment(
        consumer,
        stack=STACK,
        region=REGION,
        routing_parameter=names.routing_parameter,
        db_host="127.0.0.1",
        db_name=rig.database,
        db_user=rig.postgres.user,
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        **DUMMY_AWS_ENV,
        "AWS_ENDPOINT_URL": rig.moto.url,
        **{k: str(v) for k, v in stack_env.items()},
        env.DB_PORT: str(rig.postgres.port),
        env.DB_SSLROOTCERT: str(rig.postgres.ca_file),
        env.HANDLER: "tests.runtime.worker.handlers:double",
    }


@pytest.fixture
def worker_rig(moto_server: MotoServer, tls_postgres: LocalPostgres) -> Iterator[WorkerRig]:
    moto_server.reset()
    database = f"w_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(tls_postgres.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    rig = WorkerRig(moto_server, tls_postgres, database)
    names = Names(STACK)
    rig.client("sqs").create_queue(QueueName=names.job_queue)
    rig.set_phase(1)
    rig.env = base_environment(rig, env.CONSUMER_SQS)
    yield rig
    with psycopg.connect(tls_postgres.conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
