"""The reference ML service image (examples/ml-service), built by ``make image``, run in both modes
the way the stack runs it: the image's own ENTRYPOINT and USER, the offline plan's environment for
the Batch job definition plus the pipe's overrides, or for the ECS task definition, against moto's
server, the local Kafka broker and TLS-only PostgreSQL on the host's 127.0.0.1.

No Docker daemon here: ``buildah run --isolation chroot --network host`` runs a command in the
image (FACTS.md, "Containers"); it does not apply the ENTRYPOINT, so the test reads it with
``buildah inspect`` and passes it. Skipped, saying why, where buildah or the image is missing;
``.ci/run`` builds the image before the tests and sets ``JOBSTREAM_REQUIRE_IMAGE=1``, so there a
missing image fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.plan import Plan, PlanSet
from jobstream.contract import env
from jobstream.contract.exits import WorkerExit
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import producer_config
from jobstream.messaging.publishers import KafkaPublisher
from rehearsal.servers import DUMMY_AWS_ENV, LocalPostgres, MotoServer, TansuBroker
from tests.contract.test_worker_contract import (
    BATCH_PLACES,
    applied,
    job_definition_environment,
    pipe_overrides,
    prepare_database,
    publish_routing,
    resolve_dynamic_paths,
    task_environment,
)
from tests.runtime.messaging.conftest import create_topics

IMAGE = os.environ.get("JOBSTREAM_TEST_IMAGE", "localhost/jobstream-ml:dev")
CA_IN_IMAGE = "/tmp/jobstream-test-ca.pem"

pytestmark = [pytest.mark.image, pytest.mark.moto_server, pytest.mark.postgres]


@dataclass(frozen=True)
class Image:
    name: str
    entrypoint: tuple[str, ...]
    user: str


def _unavailable(reason: str) -> None:
    if os.environ.get("JOBSTREAM_REQUIRE_IMAGE") == "1":
        pytest.fail(f"{reason} (JOBSTREAM_REQUIRE_IMAGE=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def image() -> Image:
    if shutil.which("buildah") is None:
        _unavailable("buildah is not installed (apt-get install podman); `make image` needs it")
    found = subprocess.run(
        ["buildah", "inspect", "--type", "image", IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        _unavailable(f"image {IMAGE} is not built: run `make image`")
    config = json.loads(found.stdout)["OCIv1"]["config"]
    return Image(IMAGE, tuple(config["Entrypoint"]), config.get("User", ""))


@pytest.fixture
def container(image: Image, tls_postgres: LocalPostgres) -> Iterator[str]:
    ctr = subprocess.run(
        ["buildah", "from", image.name], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The test CA, readable by the image's user (stands in for the system store's ACM roots).
    subprocess.run(
        ["buildah", "copy", "--chmod", "0644", ctr, str(tls_postgres.ca_file), CA_IN_IMAGE],
        capture_output=True,
        check=True,
    )
    yield ctr
    subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False)


def _run_args(ctr: str, image: Image, environ: Mapping[str, str]) -> list[str]:
    flags = [f for k, v in environ.items() for f in ("-e", f"{k}={v}")]
    return [
        "buildah", "run", "--isolation", "chroot", "--network", "host", *flags, ctr,
        "--", *image.entrypoint,
    ]  # fmt: skip


def container_environment(
    plan: Plan, postgres: LocalPostgres, moto: MotoServer, *parts: Mapping[str, str]
) -> dict[str, str]:
    """The plan's variables with the places substituted by value (as in the contract test);
    the image supplies PATH, PYTHONPATH and JOBSTREAM_HANDLER itself."""
    by_value = {
        plan.outputs["dbProxyEndpoint"]: "127.0.0.1",
        "5432": str(postgres.port),
        env.DB_SSLROOTCERT_SYSTEM: CA_IN_IMAGE,
    }
    merged: dict[str, str] = {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL": moto.url}
    for part in parts:
        merged.update({k: by_value.get(v, v) for k, v in part.items()})
    return merged


@pytest.fixture
def dev3(plans: PlanSet, tls_postgres: LocalPostgres, moto_server: MotoServer) -> Plan:
    plan = plans.get("dev", 3)
    moto_server.reset()
    names = job_definition_environment(plan)
    prepare_database(tls_postgres, names[env.DB_NAME], names[env.DB_USER])
    return plan


def test_the_image_runs_the_worker_as_a_non_root_user_without_pulumi(
    image: Image, container: str
) -> None:
    assert image.entrypoint == ("jobstream-worker",)
    assert image.user and not image.user.startswith(("0", "root")), image.user
    probe = subprocess.run(
        ["buildah", "run", "--isolation", "chroot", container, "--", "python3", "-c",
         "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in "
         "('pulumi', 'pulumi_aws', 'pulumi_kafka', 'pulumi_policy')))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, f"a pulumi package is installed in {image.name}: {probe.stderr}"


def test_batch_mode_in_the_image_applies_the_pipes_message(
    image: Image, container: str, dev3: Plan, tls_postgres: LocalPostgres, moto_server: MotoServer
) -> None:
    publish_routing(moto_server, dev3, **BATCH_PLACES)
    job = Envelope.new("embed", {"text": "hello batch world"}, job_id=f"img-{uuid.uuid4().hex[:8]}")
    record = {"body": job.with_routes(["sqs", "kafka"]).to_json(), "messageId": "m-img"}
    environ = container_environment(
        dev3, tls_postgres, moto_server,
        job_definition_environment(dev3), resolve_dynamic_paths(pipe_overrides(dev3), record),
    )  # fmt: skip
    done = subprocess.run(
        _run_args(container, image, environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == WorkerExit.OK, done.stderr
    database = job_definition_environment(dev3)[env.DB_NAME]
    assert applied(tls_postgres, database).get(job.job_id) == "sqs", done.stderr


def test_batch_mode_in_the_image_exits_65_on_a_poison_message(
    image: Image, container: str, dev3: Plan, tls_postgres: LocalPostgres, moto_server: MotoServer
) -> None:
    publish_routing(moto_server, dev3, **BATCH_PLACES)
    record = {"body": "{not an envelope", "messageId": "m-poison"}
    environ = container_environment(
        dev3, tls_postgres, moto_server,
        job_definition_environment(dev3), resolve_dynamic_paths(pipe_overrides(dev3), record),
    )  # fmt: skip
    done = subprocess.run(
        _run_args(container, image, environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == WorkerExit.POISON, done.stderr


def _worker_pid(root: int) -> int | None:
    """The worker process somewhere below ``buildah run`` (chroot isolation shares the host's
    PID namespace; buildah does not forward SIGTERM, so ECS's stop is sent to the worker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [part.decode(errors="replace") for part in raw if part]
        # The Python interpreter running the console script, not buildah's own helpers (whose
        # command lines end with the same words).
        is_python = bool(argv) and "python" in Path(argv[0]).name
        if pid != root and is_python and any(a.endswith("/jobstream-worker") for a in argv[1:]):
            return pid
        stack += children.get(pid, [])
    return None


@pytest.mark.kafka
def test_service_mode_in_the_image_applies_a_kafka_job_and_stops_on_sigterm(
    image: Image,
    container: str,
    dev3: Plan,
    tls_postgres: LocalPostgres,
    moto_server: MotoServer,
    kafka_broker: TansuBroker,
) -> None:
    topic = f"img-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, topic, f"{topic}.dlq")
    publish_routing(
        moto_server, dev3, queue_url=BATCH_PLACES["queue_url"], topic=topic,
        dead_letter_topic=f"{topic}.dlq", bootstrap_brokers=kafka_broker.bootstrap,
        consumer_group=f"img-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    job = Envelope.new("embed", {"text": "hello kafka"}, job_id=f"imgk-{uuid.uuid4().hex[:8]}")
    KafkaPublisher(producer_config(kafka_broker.bootstrap)).publish(
        topic, job.with_routes(["kafka"])
    )
    environ = container_environment(dev3, tls_postgres, moto_server, task_environment(dev3))
    # A session of its own: buildah's chroot helper outlives a killed `buildah run`, so a failed
    # wait below must kill the whole group or the worker keeps consuming after the test.
    proc = subprocess.Popen(
        _run_args(container, image, environ),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    database = task_environment(dev3)[env.DB_NAME]
    try:
        deadline = time.monotonic() + 60
        while job.job_id not in applied(tls_postgres, database) and time.monotonic() < deadline:
            time.sleep(0.3)
        worker = _worker_pid(proc.pid)
        assert worker is not None, "no jobstream-worker process under buildah run"
        os.kill(worker, signal.SIGTERM)
        code = proc.wait(timeout=40)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log = proc.stderr.read() if proc.stderr else ""
    assert applied(tls_postgres, database).get(job.job_id) == "kafka", log
    assert code == WorkerExit.OK, log
    assert "kafka consumer stopped" in log
