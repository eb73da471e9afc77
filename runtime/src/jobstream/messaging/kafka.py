"""confluent-kafka configuration: durable producer, manual-commit consumer, MSK IAM auth.

With ``kafka_auth == "iam"`` the client authenticates with SASL/OAUTHBEARER over TLS and
obtains tokens from ``aws_msk_iam_sasl_signer.MSKAuthTokenProvider`` through ``oauth_cb``.

Token refresh: librdkafka asks for a new token before the current one expires. Before
confluent-kafka 2.13.0 that request was served only from ``poll()``, so an idle producer or an
admin client stuck at CONNECT (confluent-kafka-python #1713, #1960); from 2.13.0 it runs on a
background thread for the admin, producer and consumer clients ("Handle OAuth Token Refreshes
using background thread", PR #2130, CHANGELOG v2.13.0), which is why the runtime requires it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from jobstream.contract.routing import KAFKA_AUTH_IAM, KAFKA_AUTH_NONE

OAuthCallback = Callable[[Any], tuple[str, float]]

CREDENTIAL_EXPIRY_MARGIN_SECONDS = 60.0
"""A token ends this long before the credentials that signed it, so librdkafka re-authenticates
with fresh ones while the old are still valid."""


class NoCredentialsError(RuntimeError):
    """No AWS credentials to sign an MSK IAM token with."""


def _credential_expiry(credentials: Any) -> float | None:
    """Seconds since the epoch at which refreshable credentials (a role's, the ECS task's)
    expire; None for static ones. botocore keeps the expiry of ``RefreshableCredentials`` in
    ``_expiry_time`` (an aware datetime) and has no public accessor for it."""
    expiry = getattr(credentials, "_expiry_time", None)
    return expiry.timestamp() if isinstance(expiry, datetime) else None


def msk_iam_oauth_cb(
    region: str,
    *,
    session_factory: Callable[[], Any] | None = None,
    margin_seconds: float = CREDENTIAL_EXPIRY_MARGIN_SECONDS,
) -> OAuthCallback:
    """An ``oauth_cb`` for librdkafka: returns ``(token, expiry in seconds since the epoch)``.

    librdkafka calls it with the ``sasl.oauthbearer.config`` string (unused here) whenever it
    needs a token. The signer gives every token a fixed 900 s lifetime whatever the credentials'
    own expiry (aws-msk-iam-sasl-signer-python #48), so a token signed with credentials that
    expire sooner would outlive them: the expiry returned is the signer's, capped at the
    credentials' expiry less ``margin_seconds``. The token is signed with the very credentials
    whose expiry is read (a frozen copy), so a refresh in between cannot mismatch them.
    ``session_factory`` makes the botocore session (tests pass fakes).
    """

    def callback(_config: Any) -> tuple[str, float]:
        import botocore.session
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        from botocore.credentials import CredentialProvider, Credentials

        session = (session_factory or botocore.session.Session)()
        credentials = session.get_credentials()
        if credentials is None:
            raise NoCredentialsError("no AWS credentials to sign the MSK IAM token with")
        frozen = credentials.get_frozen_credentials()  # refreshes first when due
        expires_at = _credential_expiry(credentials)

        class _Frozen(CredentialProvider):
            METHOD = "jobstream-frozen"

            def load(self) -> Credentials:
                # Empty values fail the signer's own check ("AWS Credentials can not be empty").
                return Credentials(frozen.access_key or "", frozen.secret_key or "", frozen.token)

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            region, _Frozen()
        )
        expiry = expiry_ms / 1000.0
        if expires_at is not None:
            expiry = min(expiry, max(expires_at - margin_seconds, time.time()))
        return token, expiry

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
    max_poll_interval_ms: int = 300_000,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Manual commits (``enable.auto.commit`` off), start from the earliest offset;
    ``max_poll_interval_ms`` must exceed the longest processing of one message."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": heartbeat_ms,
        "max.poll.interval.ms": max_poll_interval_ms,
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
