"""confluent-kafka configuration: durable producer, manual-commit consumer, MSK IAM auth.

With ``kafka_auth == "iam"`` the client authenticates with SASL/OAUTHBEARER over TLS and
obtains tokens from ``aws_msk_iam_sasl_signer.MSKAuthTokenProvider`` through ``oauth_cb``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jobstream.contract.routing import KAFKA_AUTH_IAM, KAFKA_AUTH_NONE

OAuthCallback = Callable[[Any], tuple[str, float]]


def msk_iam_oauth_cb(region: str) -> OAuthCallback:
    """An ``oauth_cb`` for librdkafka: returns ``(token, expiry in seconds since the epoch)``.

    librdkafka calls it with the ``sasl.oauthbearer.config`` string (unused here) whenever
    it needs a token. The signer returns the expiry in milliseconds.
    """

    def callback(_config: Any) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000.0

    return callback


def auth_config(kafka_auth: str | None, region: str | None) -> dict[str, Any]:
    if kafka_auth == KAFKA_AUTH_IAM:
        if not region:
            raise ValueError("kafka_auth 'iam' needs an AWS region for the token signer")
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "OAUTHBEARER",
            "oauth_cb": msk_iam_oauth_cb(region),
        }
    if kafka_auth in (None, KAFKA_AUTH_NONE):
        return {}
    raise ValueError(f"unknown kafka_auth {kafka_auth!r}")


def producer_config(
    bootstrap: str,
    *,
    kafka_auth: str | None = None,
    region: str | None = None,
    delivery_timeout_ms: int = 30_000,
    linger_ms: int = 5,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """acks=all, idempotent, murmur2_random partitioner (same partition as Java clients)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "message.timeout.ms": delivery_timeout_ms,
        "partitioner": "murmur2_random",
        **auth_config(kafka_auth, region),
    }
    config.update(extra or {})
    return config


def consumer_config(
    bootstrap: str,
    group: str,
    *,
    kafka_auth: str | None = None,
    region: str | None = None,
    session_timeout_ms: int = 10_000,
    heartbeat_ms: int = 3_000,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Manual commits (``enable.auto.commit`` off), start from the earliest offset."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": heartbeat_ms,
        **auth_config(kafka_auth, region),
    }
    config.update(extra or {})
    return config


def ensure_topics(
    config: Mapping[str, Any], names: list[str], *, partitions: int = 3, timeout: float = 15.0
) -> None:
    """Create the topics that do not exist yet (local runs; in AWS the stack creates them)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient(dict(config))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(n, num_partitions=partitions) for n in names if n not in existing]
    if not wanted:
        return
    for future in admin.create_topics(wanted).values():
        future.result(timeout=timeout)
