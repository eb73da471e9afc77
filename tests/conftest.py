"""Session-wide test settings and servers: no test may reach AWS or the instance metadata
service. The local servers (moto's HTTP server, the Tansu Kafka broker, PostgreSQL plain and
TLS-only) listen on 127.0.0.1, start once per session when a test first asks for them, and are
stopped by PID at the end."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.plan import PlanSet, SharedEvaluations, sharing_evaluations
from rehearsal.servers import LocalPostgres, MotoServer, TansuBroker, use_dummy_aws_credentials

ROOT = Path(__file__).resolve().parent.parent

# Set before any boto3 client exists: dummy credentials, a fixed region, no IMDS probing.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# moto's EC2 backend (which RDS and Batch bring up) would otherwise load its ~40k default AMIs
# every time mock_aws starts one: ~0.2 s a test, and no test uses an AMI.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


SERVER_FIXTURES: dict[str, str] = {
    "moto_server": "moto_server",
    "kafka_broker": "kafka",
    "postgres_server": "postgres",
    "tls_postgres": "postgres",
    "postgres": "postgres",  # tests/ops/test_db_bootstrap.py's own TLS-only server
}
"""Fixture that starts a local server -> the marker every test using it must carry, so that
``make test-fast`` (``-m "not kafka and not postgres and not moto_server"``) runs no server."""


PLANS_SCOPE = "offline plans"
WAITS_FIRST = ("tests/rehearsal/test_rehearse.py",)
"""Files whose tests mostly wait (the rehearsal walks the phases on the clock for ~30 s): run
first, so that under xdist the other workers fill the cores meanwhile."""
LONG_NEXT = (
    "tests/ops/test_redrive.py",
    "tests/ops/test_recovery_end_to_end.py",
    "tests/ops/test_replay.py",
    "tests/runtime/messaging/test_consumers_kafka.py",
    "tests/ops/test_db_bootstrap.py",
)
"""The longest files after the rehearsal and the offline plans (20-45 s each, measured; most
of it waiting on long polls and Kafka idle timeouts): handed out next, one per free worker,
so that no worker is left with two of them at the end (longest first)."""


@functools.cache
def evaluates_plans(test_file: str) -> bool:
    """Whether a test file joins the offline plans' scope: it imports from ``infra.plan`` and
    starts no server (a server-backed file, mostly waiting, runs beside it instead)."""
    text = (ROOT / test_file).read_text()
    return "infra.plan" in text and not any(
        f"pytest.mark.{marker}" in text for marker in set(SERVER_FIXTURES.values())
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [
        f"{item.nodeid} uses the {fixture} fixture but is not marked {marker}"
        for item in items
        for fixture, marker in SERVER_FIXTURES.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    ]
    if missing:
        raise pytest.UsageError("server-backed tests without their marker:\n" + "\n".join(missing))
    stale = [f for f in (*WAITS_FIRST, *LONG_NEXT) if not (ROOT / f).is_file()]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py orders files that do not exist: {stale}")

    def order(item: pytest.Item) -> int:
        test_file = item.nodeid.split("::")[0]
        if test_file in WAITS_FIRST:
            return 0
        if evaluates_plans(test_file):
            return 1
        return 2 + LONG_NEXT.index(test_file) if test_file in LONG_NEXT else 2 + len(LONG_NEXT)

    items.sort(key=order)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the suite also runs with -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadscope``: one scope per test file (its module fixtures run once), and one
    for all the files that evaluate offline plans, so that one worker imports the program and
    evaluates each plan of ``plans`` once for all of them. Scopes go out in collection order
    (``--no-loadscope-reorder``), the rehearsal first."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            test_file = nodeid.split("::")[0]
            return PLANS_SCOPE if evaluates_plans(test_file) else test_file

    return FileScopes(config, log)


@pytest.fixture(scope="session", autouse=True)
def shared_evaluations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedEvaluations]:
    """Every offline plan the session evaluates, shared by its inputs (``SharedEvaluations``):
    the commands a test runs in this process and the ``plans`` fixture evaluate each distinct
    stack config once per run, also across xdist workers (through a folder of the run's
    temporary directory, which pytest makes for this run alone). A test that changes the program
    or the mocks, or watches an evaluation happen, is marked ``fresh_evaluations``: it evaluates
    afresh, and keeps nothing."""
    run_directory = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_directory = run_directory.parent  # each worker's base is one folder of the run's
    directory = run_directory / "shared-plans"
    directory.mkdir(exist_ok=True)
    shared = SharedEvaluations(directory=directory)
    with sharing_evaluations(shared):
        yield shared


@pytest.fixture(autouse=True)
def _fresh_evaluations_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("fresh_evaluations") is None:
        yield
        return
    with sharing_evaluations(None):
        yield


@pytest.fixture(scope="session")
def plans(shared_evaluations: SharedEvaluations) -> PlanSet:
    """Offline plans per (stack, phase), computed once per test session."""
    return PlanSet(shared_evaluations)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """A SIGINT raises KeyboardInterrupt during the test, as Ctrl-C does in a terminal, also when
    the suite was started with SIGINT ignored (a background job of a non-interactive shell),
    which Python then leaves ignored. For the tests that interrupt a command with a real one."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
