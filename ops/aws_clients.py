"""boto3 plumbing shared by the operator commands: one session, cached clients, and the
translation of AWS errors into a clear message and an exit code (never a traceback).

The exit codes and error classes live in ``ops.errors`` (no boto3 there, so parsers and error
paths stay light); they are re-exported here for the commands that use both.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config

from ops.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_CHECK_FAILED,
    EXIT_CODES,
    EXIT_NO_AWS,
    EXIT_NOT_DEPLOYED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    AccessDeniedError,
    CannotTellError,
    CannotTellStopError,
    NoAwsAccessError,
    NotFoundError,
    OpsError,
    ResourceMissingError,
    StackNotDeployedError,
    UsageError,
    handles_errors,
    report_error,
)

__all__ = [
    "ACCESS_DENIED_CODES",
    "CREDENTIAL_CODES",
    "EXIT_ACCESS_DENIED",
    "EXIT_CHECK_FAILED",
    "EXIT_CODES",
    "EXIT_NOT_DEPLOYED",
    "EXIT_NOT_FOUND",
    "EXIT_NO_AWS",
    "EXIT_OK",
    "EXIT_USAGE",
    "NOT_FOUND_CODES",
    "AccessDeniedError",
    "Aws",
    "CannotTellError",
    "CannotTellStopError",
    "NoAwsAccessError",
    "NotFoundError",
    "OpsError",
    "ResourceMissingError",
    "StackNotDeployedError",
    "UsageError",
    "aws_call",
    "error_code",
    "error_message",
    "handles_errors",
    "page_items",
    "pages",
    "report_error",
]

# Error codes AWS services use for "no such resource" (per service, as the APIs return them).
NOT_FOUND_CODES = frozenset(
    {
        "ParameterNotFound",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBProxyNotFoundFault",
        "NotFoundException",
        "ResourceNotFoundException",
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        "ResourceNotFound",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "AuthorizationErrorException",
        "NotAuthorized",
        "Forbidden",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "IncompleteSignature",
    }
)

_CREDENTIAL_EXCEPTIONS: tuple[type[Exception], ...] = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.TokenRetrievalError,
    botocore.exceptions.SSOTokenLoadError,
    botocore.exceptions.UnauthorizedSSOTokenError,
    botocore.exceptions.ProfileNotFound,
)
_NETWORK_EXCEPTIONS: tuple[type[Exception], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


def pages(client: Any, operation: str, action: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of one paginated call (``operation`` as the client names it, ``action`` as
    in ``aws_call``), through botocore's paginator: it carries the continuation token, and
    stops with an error instead of looping when a service hands the same token back. Each
    page's call has its errors translated as ``aws_call`` does; stop iterating to stop
    calling."""
    iterator = iter(client.get_paginator(operation).paginate(**params))
    while True:
        with aws_call(action):  # a token handed back twice: botocore's PaginationError
            page = next(iterator, None)
        if page is None:
            return
        yield page


def page_items(
    client: Any, operation: str, action: str, key: str, **params: Any
) -> Iterator[dict[str, Any]]:
    """The items under ``key`` of every page of one paginated call (``pages``)."""
    for page in pages(client, operation, action, **params):
        yield from page.get(key, [])


def error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or str(error)


@contextmanager
def aws_call(action: str) -> Iterator[None]:
    """Run one AWS call (``action`` like ``sqs:GetQueueAttributes``) and translate its errors:
    credentials and network -> ``NoAwsAccessError``; denied -> ``AccessDeniedError``;
    not found -> ``NotFoundError``; anything else the API answers with -> ``CannotTellError``."""
    try:
        yield
    except botocore.exceptions.ClientError as error:
        code = error_code(error)
        if code in ACCESS_DENIED_CODES:
            raise AccessDeniedError(
                f"AWS denied {action}: {error_message(error)}",
                hint=f"the operator role needs {action} (docs/operations.md lists every action)",
            ) from None
        if code in CREDENTIAL_CODES:
            raise NoAwsAccessError(
                f"AWS rejected the credentials on {action}: {code}: {error_message(error)}",
                hint="refresh the credentials (aws sso login / new session) and retry",
            ) from None
        if code in NOT_FOUND_CODES:
            raise NotFoundError(action, code, error_message(error)) from None
        raise CannotTellError(f"{action} failed: {code}: {error_message(error)}") from None
    except _CREDENTIAL_EXCEPTIONS as error:
        raise NoAwsAccessError(
            f"no usable AWS credentials for {action}: {error}",
            hint="set AWS_PROFILE or pass --profile, or export credentials, then retry",
        ) from None
    except _NETWORK_EXCEPTIONS as error:
        raise NoAwsAccessError(
            f"cannot reach AWS for {action}: {error}",
            hint="check the network, proxy and region (--region)",
        ) from None
    except botocore.exceptions.BotoCoreError as error:
        raise CannotTellError(f"{action} failed: {error}") from None
    except NotImplementedError as error:
        # moto raises this in process for an API it does not implement; a real endpoint
        # never does. Either way the account gave no answer.
        raise CannotTellError(f"{action} is not answered by this endpoint: {error}") from None


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """One loader of botocore's service models per process: it caches the parsed JSON, so a
    second session (the next command in the same process, as in the tests) does not parse the
    models again. The models are read-only data; sharing them is safe."""
    return botocore.loaders.create_loader()


@dataclass
class Aws:
    """A boto3 session for one region (and optional profile) with cached clients."""

    region: str
    profile: str | None = None

    def __post_init__(self) -> None:
        with aws_call("session setup"):
            core = botocore.session.get_session()
            core.register_component("data_loader", _shared_loader())
            self.session = boto3.session.Session(
                botocore_session=core, region_name=self.region, profile_name=self.profile
            )
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            )
            self._clients[service] = self.session.client(service, config=config)  # pyright: ignore[reportCallIssue, reportArgumentType]
        return self._clients[service]
