"""Session-wide test settings and servers: no test may reach AWS or the instance metadata
service. The local servers (moto's HTTP server, the Tansu Kafka broker, PostgreSQL plain and
TLS-only) listen on 127.0.0.1, start once per session when a test first asks for them, and are
stopped by PID at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from infra.plan import PlanSet
from rehearsal.servers import LocalPostgres, MotoServer, TansuBroker, use_dummy_aws_credentials

# Set before any boto3 client exists: dummy credentials, a fixed region, no IMDS probing.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def plans() -> PlanSet:
    """Offline plans per (stack, phase), computed once per test session."""
    return PlanSet()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    use_dummy_aws_credentials()
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    broker = TansuBroker().start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_postgres() -> Iterator[LocalPostgres]:
    """TLS-only PostgreSQL with its own CA (``ca_file``): what the worker reaches RDS Proxy as."""
    server = LocalPostgres(tls=True).start()
    yield server
    server.stop()
