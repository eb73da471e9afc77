"""The environment variables that the stack, the image and the worker share (standard library only).

The stack sets them in the Batch job definition and the ECS task definition
(``worker_environment``) and in the pipe's container overrides (``PIPE_OVERRIDES``: dynamic path
parameters the pipe fills from each SQS message); the ML image sets
``JOBSTREAM_HANDLER``; ``jobstream-worker`` reads them all (``jobstream.worker.settings``).
Nothing else spells these names, so the two sides cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")

# ---- set by the image ------------------------------------------------------------------------
HANDLER = "JOBSTREAM_HANDLER"
"""``module:function``: the team's handler, ``(Envelope) -> Mapping`` (it writes nothing itself)."""
RESULT_WRITER = "JOBSTREAM_RESULT_WRITER"
"""Optional ``module:function`` writing the result inside the ledger transaction (default: JSON
into ``jobstream_results``)."""

# ---- set by the stack ------------------------------------------------------------------------
CONSUMER = "JOBSTREAM_CONSUMER"
"""``sqs``: one Batch job for one SQS message, then exit; ``kafka``: the consumer service."""
STACK = "JOBSTREAM_STACK"
"""The stack name: the ``Stack`` dimension of every metric."""
ROUTING_PARAMETER = "JOBSTREAM_ROUTING_PARAMETER"
REGION = "AWS_DEFAULT_REGION"
"""botocore reads the region from ``AWS_DEFAULT_REGION`` (not ``AWS_REGION``)."""
DB_HOST = "JOBSTREAM_DB_HOST"
DB_PORT = "JOBSTREAM_DB_PORT"
DB_NAME = "JOBSTREAM_DB_NAME"
DB_USER = "JOBSTREAM_DB_USER"
DB_SSLMODE = "JOBSTREAM_DB_SSLMODE"
DB_SSLROOTCERT = "JOBSTREAM_DB_SSLROOTCERT"

# ---- set by the pipe, per message --------------------------------------------------------------
JOB_MESSAGE = "JOBSTREAM_JOB_MESSAGE"
SQS_MESSAGE_ID = "JOBSTREAM_SQS_MESSAGE_ID"
PIPE_OVERRIDES: Mapping[str, str] = {JOB_MESSAGE: "$.body", SQS_MESSAGE_ID: "$.messageId"}
"""Container overrides of the pipe's Batch target: variable -> dynamic path into the SQS record."""

MAX_JOB_MESSAGE_CHARS = 6144
"""The largest message body the SQS route carries. AWS Batch fails a job at launch when its
container overrides exceed 8192 characters ("Container Overrides length must be at most 8192",
AWS Batch troubleshooting guide), and the pipe passes the whole body as one override next to the
message id and the variables AWS Batch adds itself; the SQS publisher refuses a larger envelope
rather than let it fail later as a Batch job."""

# ---- optional, for local runs ----------------------------------------------------------------
METRICS = "JOBSTREAM_METRICS"
"""``cloudwatch`` (default) or ``off``."""
LOG_LEVEL = "JOBSTREAM_LOG_LEVEL"
ROUTING_TTL = "JOBSTREAM_ROUTING_TTL_SECONDS"
"""How long the routing document is cached (default 15 s); a copy older than four TTLs that
cannot be refreshed is reported stale."""
ROUTING_TTL_DEFAULT = 15.0
KAFKA_SESSION_TIMEOUT = "JOBSTREAM_KAFKA_SESSION_TIMEOUT_MS"
"""The consumer group session timeout (default 10,000 ms): how long a dead task's partitions wait
before the group gives them to another task. The heartbeat is a third of it."""
KAFKA_SESSION_TIMEOUT_DEFAULT = 10_000
KAFKA_MAX_POLL_INTERVAL = "JOBSTREAM_KAFKA_MAX_POLL_INTERVAL_MS"
"""librdkafka's ``max.poll.interval.ms`` for the consumer (default 300,000, librdkafka's): the
longest one message may take, every handler attempt, the ledger and the commit included. A
consumer that does not poll again within it leaves the group: its partitions go to another
task, which processes the message again, and its own commit fails. The stack sets it from
``jobTimeoutSeconds`` (``kafka_max_poll_interval_ms``)."""
KAFKA_MAX_POLL_INTERVAL_DEFAULT = 300_000
KAFKA_MAX_POLL_INTERVAL_MAX = 86_400_000
"""librdkafka's upper bound for ``max.poll.interval.ms`` (CONFIGURATION.md: 1 .. 86400000)."""
KAFKA_POLL_MARGIN_SECONDS = 120
"""Beyond the job's own time: the ledger, the commit, a dead-letter write (delivery timeout
30 s) and the handler attempts' backoff."""


def kafka_max_poll_interval_ms(job_timeout_seconds: int) -> int:
    """The consumer's ``max.poll.interval.ms`` for jobs that take up to ``job_timeout_seconds``
    (the Batch attempt timeout, which bounds every handler attempt of one job on Batch; on
    Kafka the same handler runs the same jobs)."""
    return min(
        (job_timeout_seconds + KAFKA_POLL_MARGIN_SECONDS) * 1000, KAFKA_MAX_POLL_INTERVAL_MAX
    )


CONSUMER_SQS = "sqs"
CONSUMER_KAFKA = "kafka"
CONSUMER_KINDS: tuple[str, ...] = (CONSUMER_SQS, CONSUMER_KAFKA)

DB_PORT_DEFAULT = 5432
DB_SSLMODE_DEFAULT = "verify-full"
DB_SSLROOTCERT_SYSTEM = "system"
"""libpq 16+: verify against the system CA store (RDS Proxy presents an ACM certificate)."""
METRICS_CLOUDWATCH = "cloudwatch"
METRICS_OFF = "off"


def worker_environment(
    consumer: str,
    *,
    stack: str,
    region: V,
    routing_parameter: str,
    db_host: V,
    db_name: str,
    db_user: str,
    kafka_max_poll_interval_ms: int | None = None,
) -> dict[str, str | V]:
    """What the stack sets for ``jobstream-worker``: in the Batch job definition with
    ``consumer=CONSUMER_SQS`` (the pipe adds ``PIPE_OVERRIDES`` per message), in the ECS task
    definition with ``consumer=CONSUMER_KAFKA``. ``region`` and ``db_host`` may be deferred values
    (Pulumi outputs): they are passed through. ``kafka_max_poll_interval_ms``: the Kafka
    consumer's ``KAFKA_MAX_POLL_INTERVAL``."""
    if consumer not in CONSUMER_KINDS:
        raise ValueError(f"consumer {consumer!r} is not one of {CONSUMER_KINDS}")
    poll: dict[str, str | V] = (
        {}
        if kafka_max_poll_interval_ms is None
        else {KAFKA_MAX_POLL_INTERVAL: str(kafka_max_poll_interval_ms)}
    )
    return {
        CONSUMER: consumer,
        STACK: stack,
        REGION: region,
        ROUTING_PARAMETER: routing_parameter,
        DB_HOST: db_host,
        DB_PORT: str(DB_PORT_DEFAULT),
        DB_NAME: db_name,
        DB_USER: db_user,
        DB_SSLMODE: DB_SSLMODE_DEFAULT,
        DB_SSLROOTCERT: DB_SSLROOTCERT_SYSTEM,
        **poll,
    }
