"""The worker's environment: every problem named with its variable, value and what is allowed."""

from __future__ import annotations

import pytest

from jobstream.contract import env
from jobstream.worker.settings import WorkerConfigError, WorkerSettings

VALID = {
    env.CONSUMER: "sqs",
    env.HANDLER: "ml.handler:score",
    env.STACK: "dev",
    env.REGION: "us-east-1",
    env.ROUTING_PARAMETER: "/jobstream/dev/routing",
    env.DB_HOST: "proxy.example",
    env.DB_NAME: "jobstream",
    env.DB_USER: "jobstream_app",
    env.JOB_MESSAGE: "{}",
}


def problems(**changes: str | None) -> list[str]:
    environ = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    with pytest.raises(WorkerConfigError) as caught:
        WorkerSettings.from_environ(environ)
    return [str(p) for p in caught.value.problems]


def test_a_complete_environment_gives_the_defaults_for_the_rest() -> None:
    settings = WorkerSettings.from_environ(VALID)
    assert (settings.database.port, settings.database.sslmode) == (5432, "verify-full")
    assert settings.database.sslrootcert == "system"
    assert (settings.metrics, settings.log_level) == ("cloudwatch", "INFO")


def test_every_missing_variable_is_named_at_once() -> None:
    found = problems(**{env.DB_HOST: None, env.STACK: None})
    assert [p.split(" = ")[0] for p in found] == [env.DB_HOST, env.STACK]


def test_an_unknown_consumer_kind_is_refused() -> None:
    assert problems(**{env.CONSUMER: "lambda"}) == [
        "JOBSTREAM_CONSUMER = 'lambda': must be one of sqs, kafka"
    ]


def test_iam_auth_needs_tls_so_sslmode_disable_is_refused() -> None:
    (problem,) = problems(**{env.DB_SSLMODE: "disable"})
    assert problem.startswith("JOBSTREAM_DB_SSLMODE = 'disable': must be one of require")


def test_the_handler_must_be_module_colon_function() -> None:
    assert problems(**{env.HANDLER: "ml.handler.score"}) == [
        "JOBSTREAM_HANDLER = 'ml.handler.score': must be module:function"
    ]


def test_batch_job_mode_needs_the_message_the_pipe_passes() -> None:
    (problem,) = problems(**{env.JOB_MESSAGE: None})
    assert problem.startswith("JOBSTREAM_JOB_MESSAGE = <unset>: is required in Batch job mode")


def test_service_mode_needs_no_job_message() -> None:
    environ = {k: v for k, v in VALID.items() if k != env.JOB_MESSAGE}
    assert WorkerSettings.from_environ({**environ, env.CONSUMER: "kafka"}).consumer == "kafka"


def test_a_port_that_is_not_a_port_is_refused() -> None:
    assert problems(**{env.DB_PORT: "70000"}) == [
        "JOBSTREAM_DB_PORT = '70000': must be a TCP port 1..65535"
    ]


def test_a_routing_ttl_that_is_not_positive_is_refused() -> None:
    assert problems(**{env.ROUTING_TTL: "0"}) == [
        "JOBSTREAM_ROUTING_TTL_SECONDS = '0': must be a number of seconds, 0 < s <= 3600"
    ]
