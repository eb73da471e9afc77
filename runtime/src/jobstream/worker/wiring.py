"""What the worker builds from its settings: the handler, the routing reader, the ledger over RDS
Proxy (IAM auth token, TLS), CloudWatch metrics and the Kafka client configuration.

Each builder raises ``DependencyError`` naming the dependency when it cannot be reached, or
``WorkerConfigError`` when the environment names something that does not exist (a handler
that cannot be imported): the worker turns them into one log line and an exit status.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobstream.contract import env
from jobstream.contract.routing import Routing
from jobstream.messaging import aws
from jobstream.messaging.consumers import JobHandler
from jobstream.messaging.kafka import consumer_config, producer_config
from jobstream.messaging.ledger import PostgresLedger, ResultWriter, rds_iam_conninfo
from jobstream.messaging.metrics import NULL_METRICS, CloudWatchMetrics, MetricsSink
from jobstream.messaging.routing import RoutingReader
from jobstream.worker.settings import SettingProblem, WorkerConfigError, WorkerSettings

DB_CONNECT_TIMEOUT_SECONDS = 10


def one_line(exc: BaseException) -> str:
    """An exception as one log line (libpq's messages span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class DependencyError(Exception):
    """A dependency (SSM, the database, Kafka) could not be reached or refused the worker."""

    def __init__(self, dependency: str, detail: str) -> None:
        self.dependency = dependency
        super().__init__(f"{dependency}: {detail}")


def load_callable(spec: str, variable: str) -> Callable[..., Any]:
    """``module:function`` -> the function; ``WorkerConfigError`` naming the variable if not."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise WorkerConfigError(
            [
                SettingProblem(
                    variable, spec, f"module {module_name!r} cannot be imported: {one_line(exc)}"
                )
            ]
        ) from exc
    target = getattr(module, attribute, None)
    if not callable(target):
        raise WorkerConfigError(
            [SettingProblem(variable, spec, f"{module_name} has no function {attribute!r}")]
        )
    return target


@dataclass
class Wiring:
    """The worker's dependencies, built lazily so that each failure names its dependency."""

    settings: WorkerSettings
    metrics_interval: float | None = 10.0
    _metrics: MetricsSink | None = field(default=None, init=False)
    _routing: RoutingReader | None = field(default=None, init=False)

    def handler(self) -> JobHandler:
        return load_callable(self.settings.handler, env.HANDLER)

    def result_writer(self) -> ResultWriter | None:
        if self.settings.result_writer is None:
            return None
        return load_callable(self.settings.result_writer, env.RESULT_WRITER)

    def metrics(self) -> MetricsSink:
        if self._metrics is None:
            if self.settings.metrics == env.METRICS_OFF:
                self._metrics = NULL_METRICS
            else:
                cloudwatch = aws.client(
                    "cloudwatch", region=self.settings.region, max_attempts=3, connect_timeout=5
                )
                self._metrics = CloudWatchMetrics(
                    cloudwatch, self.settings.stack, interval=self.metrics_interval
                )
        return self._metrics

    def close_metrics(self) -> None:
        if isinstance(self._metrics, CloudWatchMetrics):
            self._metrics.close()

    def routing(self) -> RoutingReader:
        if self._routing is None:
            ssm = aws.client("ssm", region=self.settings.region, max_attempts=3, connect_timeout=5)
            self._routing = RoutingReader(
                ssm,
                self.settings.routing_parameter,
                ttl=self.settings.routing_ttl_seconds,
                metrics=self.metrics(),
                component=self.settings.consumer,
            )
        return self._routing

    def read_routing(self) -> Routing:
        try:
            return self.routing().get()
        except Exception as exc:
            raise DependencyError(
                f"routing parameter {self.settings.routing_parameter}", one_line(exc)
            ) from exc

    def ledger(self) -> PostgresLedger:
        db = self.settings.database
        rds = aws.client("rds", region=self.settings.region)

        def connect() -> Any:
            import psycopg

            conninfo = rds_iam_conninfo(
                host=db.host,
                port=db.port,
                user=db.user,
                dbname=db.name,
                region=self.settings.region,
                rds=rds,
                sslmode=db.sslmode,
                sslrootcert=db.sslrootcert,
            )
            return psycopg.connect(
                conninfo, autocommit=True, connect_timeout=DB_CONNECT_TIMEOUT_SECONDS
            )

        writer = self.result_writer()
        try:
            if writer is None:
                return PostgresLedger(connect)
            return PostgresLedger(connect, writer=writer)
        except Exception as exc:
            raise DependencyError(
                f"database {db.user}@{db.host}:{db.port}/{db.name}", one_line(exc)
            ) from exc

    def kafka_consumer_config(self, routing: Any) -> dict[str, Any]:
        if routing.bootstrap_brokers is None or routing.consumer_group is None:
            raise DependencyError("kafka", "the routing document names no brokers or group")
        session = self.settings.kafka_session_timeout_ms
        return consumer_config(
            routing.bootstrap_brokers,
            routing.consumer_group,
            kafka_auth=routing.kafka_auth,
            region=self.settings.region,
            session_timeout_ms=session,
            heartbeat_ms=max(100, session // 3),
            max_poll_interval_ms=self.settings.kafka_max_poll_interval_ms,
        )

    def dead_letter_producer(self, routing: Routing) -> Any:
        from confluent_kafka import Producer

        if routing.bootstrap_brokers is None:
            raise DependencyError("kafka", "the routing document names no brokers")
        return Producer(
            producer_config(
                routing.bootstrap_brokers,
                kafka_auth=routing.kafka_auth,
                region=self.settings.region,
            )
        )
