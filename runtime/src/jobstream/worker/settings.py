"""The worker's settings, read from the environment the stack and the image give it.

``WorkerSettings.from_environ`` checks every variable at once and raises ``WorkerConfigError``
listing each problem with the variable, the value it got and what is allowed; the names are the
contract's (``jobstream.contract.env``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from jobstream.contract import env

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SSLMODES = ("require", "verify-ca", "verify-full")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class SettingProblem:
    variable: str
    value: str | None
    allowed: str

    def __str__(self) -> str:
        shown = "<unset>" if self.value is None else repr(self.value)
        return f"{self.variable} = {shown}: {self.allowed}"


class WorkerConfigError(Exception):
    """The environment is incomplete or invalid (exit ``WorkerExit.CONFIG``)."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        noun = "variable" if len(problems) == 1 else "variables"
        super().__init__(
            f"invalid worker environment ({len(problems)} bad {noun}): "
            + "; ".join(str(p) for p in problems)
        )


@dataclass(frozen=True)
class DatabaseSettings:
    host: str
    port: int
    name: str
    user: str
    sslmode: str
    sslrootcert: str


@dataclass(frozen=True)
class WorkerSettings:
    consumer: str
    """``sqs`` (one Batch job) or ``kafka`` (the consumer service)."""
    handler: str
    result_writer: str | None
    stack: str
    region: str
    routing_parameter: str
    database: DatabaseSettings
    metrics: str
    log_level: str
    routing_ttl_seconds: float
    kafka_session_timeout_ms: int
    kafka_max_poll_interval_ms: int
    job_message: str | None
    sqs_message_id: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerSettings:
        problems: list[SettingProblem] = []

        def get(name: str, allowed: str, *, default: str | None = None) -> str:
            value = environ.get(name)
            if value is None or value.strip() == "":
                if default is not None:
                    return default
                problems.append(SettingProblem(name, value, f"is required: {allowed}"))
                return ""
            return value.strip()

        def choice(name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
            value = get(name, "one of " + ", ".join(allowed), default=default)
            if value and value not in allowed:
                problems.append(SettingProblem(name, value, "must be one of " + ", ".join(allowed)))
            return value

        def callable_spec(name: str, *, required: bool) -> str | None:
            value = environ.get(name, "").strip()
            if not value:
                if required:
                    problems.append(
                        SettingProblem(name, None, "is required: module:function of the handler")
                    )
                return None
            if not _CALLABLE.match(value):
                problems.append(SettingProblem(name, value, "must be module:function"))
            return value

        consumer = choice(env.CONSUMER, env.CONSUMER_KINDS)
        handler = callable_spec(env.HANDLER, required=True) or ""
        writer = callable_spec(env.RESULT_WRITER, required=False)
        port_text = get(env.DB_PORT, "a TCP port", default=str(env.DB_PORT_DEFAULT))
        port = int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else 0
        if not port:
            problems.append(SettingProblem(env.DB_PORT, port_text, "must be a TCP port 1..65535"))
        database = DatabaseSettings(
            host=get(env.DB_HOST, "the RDS Proxy endpoint"),
            port=port,
            name=get(env.DB_NAME, "the database name"),
            user=get(env.DB_USER, "the database user (IAM auth)"),
            sslmode=choice(env.DB_SSLMODE, _SSLMODES, env.DB_SSLMODE_DEFAULT),
            sslrootcert=get(
                env.DB_SSLROOTCERT, "CA file or 'system'", default=env.DB_SSLROOTCERT_SYSTEM
            ),
        )
        ttl_text = get(env.ROUTING_TTL, "seconds", default=str(env.ROUTING_TTL_DEFAULT))
        try:
            ttl = float(ttl_text)
        except ValueError:
            ttl = -1.0
        if not 0 < ttl <= 3600:
            problems.append(
                SettingProblem(
                    env.ROUTING_TTL, ttl_text, "must be a number of seconds, 0 < s <= 3600"
                )
            )
        session_text = get(
            env.KAFKA_SESSION_TIMEOUT,
            "milliseconds",
            default=str(env.KAFKA_SESSION_TIMEOUT_DEFAULT),
        )
        session = int(session_text) if session_text.isdigit() else 0
        if not 1000 <= session <= 300_000:
            problems.append(
                SettingProblem(
                    env.KAFKA_SESSION_TIMEOUT, session_text, "must be milliseconds, 1000..300000"
                )
            )
        poll_text = get(
            env.KAFKA_MAX_POLL_INTERVAL,
            "milliseconds",
            default=str(env.KAFKA_MAX_POLL_INTERVAL_DEFAULT),
        )
        poll = int(poll_text) if poll_text.isdigit() else 0
        floor = max(session, 1000)
        if not floor <= poll <= env.KAFKA_MAX_POLL_INTERVAL_MAX:
            problems.append(
                SettingProblem(
                    env.KAFKA_MAX_POLL_INTERVAL,
                    poll_text,
                    f"must be milliseconds, {floor}..{env.KAFKA_MAX_POLL_INTERVAL_MAX} (at least "
                    "the session timeout, at most librdkafka's bound)",
                )
            )
        settings = cls(
            consumer=consumer,
            handler=handler,
            result_writer=writer,
            stack=get(env.STACK, "the stack name"),
            region=get(env.REGION, "the AWS region, e.g. us-east-1"),
            routing_parameter=get(env.ROUTING_PARAMETER, "the SSM parameter of the routing"),
            database=database,
            metrics=choice(
                env.METRICS, (env.METRICS_CLOUDWATCH, env.METRICS_OFF), env.METRICS_CLOUDWATCH
            ),
            log_level=choice(env.LOG_LEVEL, _LOG_LEVELS, "INFO").upper(),
            routing_ttl_seconds=ttl,
            kafka_session_timeout_ms=session,
            kafka_max_poll_interval_ms=poll,
            job_message=environ.get(env.JOB_MESSAGE),
            sqs_message_id=environ.get(env.SQS_MESSAGE_ID),
        )
        if consumer == env.CONSUMER_SQS and settings.job_message is None:
            problems.append(
                SettingProblem(
                    env.JOB_MESSAGE,
                    None,
                    "is required in Batch job mode: the pipe passes the SQS message body",
                )
            )
        if problems:
            raise WorkerConfigError(problems)
        return settings
