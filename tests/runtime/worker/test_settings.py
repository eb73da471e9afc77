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


def test_the_kafka_poll_interval_defaults_to_librdkafkas() -> None:
    settings = WorkerSettings.from_environ(VALID)
    assert settings.kafka_max_poll_interval_ms == env.KAFKA_MAX_POLL_INTERVAL_DEFAULT == 300_000


@pytest.mark.parametrize(
    "value",
    ["5000", "86400001", "1h", "0"],  # under the 10 s session timeout, over librdkafka's bound
)
def test_a_kafka_poll_interval_outside_its_range_is_refused(value: str) -> None:
    (problem,) = problems(**{env.KAFKA_MAX_POLL_INTERVAL: value})
    assert problem.startswith(f"JOBSTREAM_KAFKA_MAX_POLL_INTERVAL_MS = {value!r}: must be")
    assert "10000..86400000" in problem, problem


def test_the_stacks_poll_interval_covers_the_job_timeout_and_stays_in_librdkafkas_bound() -> None:
    assert env.kafka_max_poll_interval_ms(1800) == 1_920_000
    assert env.kafka_max_poll_interval_ms(43_200) == 43_320_000
    assert env.kafka_max_poll_interval_ms(10**6) == env.KAFKA_MAX_POLL_INTERVAL_MAX


def test_the_kafka_consumer_polls_within_the_interval_its_environment_sets() -> None:
    from types import SimpleNamespace

    from jobstream.worker.wiring import Wiring

    settings = WorkerSettings.from_environ(
        {**VALID, env.CONSUMER: "kafka", env.KAFKA_MAX_POLL_INTERVAL: "1920000"}
    )
    routing = SimpleNamespace(bootstrap_brokers="b-1:9098", consumer_group="g", kafka_auth="none")
    config = Wiring(settings).kafka_consumer_config(routing)
    assert config["max.poll.interval.ms"] == 1_920_000
    assert config["session.timeout.ms"] == env.KAFKA_SESSION_TIMEOUT_DEFAULT
