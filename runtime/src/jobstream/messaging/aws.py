"""boto3 clients with botocore's standard retry mode (no home-made retry loops for AWS calls)."""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_ATTEMPTS = 5


def retry_config(max_attempts: int = DEFAULT_MAX_ATTEMPTS, **extra: Any) -> Any:
    """A ``botocore.config.Config`` with the standard retry mode."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": max_attempts}, **extra)


def client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    **extra: Any,
) -> Any:
    """``boto3.client(service, ...)`` with ``retry_config``; ``endpoint_url`` for local servers."""
    import boto3

    return boto3.client(
        service,  # pyright: ignore[reportArgumentType, reportCallIssue]
        region_name=region,
        endpoint_url=endpoint_url,
        config=retry_config(max_attempts, **extra),
    )
