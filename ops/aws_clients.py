"""boto3 plumbing shared by the operator commands: one session, cached clients, and the
translation of AWS errors into a clear message and an exit code (never a traceback).

Exit codes (docs/operations.md):

| code | meaning |
|---|---|
| 0 | every check passed (status: the stack is as its phase needs) |
| 1 | a check failed or could not be decided (cannot-tell) |
| 2 | usage or configuration error (bad flags, unknown stack, bad routing document) |
| 3 | cannot reach AWS: no credentials, expired credentials, no network |
| 4 | AWS denied an API call (AccessDenied): the message names the action |
| 5 | the stack was never deployed: its routing parameter does not exist |
| 6 | a resource the command needs does not exist |
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_AWS = 3
EXIT_ACCESS_DENIED = 4
EXIT_NOT_DEPLOYED = 5
EXIT_NOT_FOUND = 6

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "all checks passed",
    EXIT_CHECK_FAILED: "a check failed or could not be decided (cannot-tell)",
    EXIT_USAGE: "usage or configuration error",
    EXIT_NO_AWS: "cannot reach AWS (credentials or network)",
    EXIT_ACCESS_DENIED: "AWS denied an API call",
    EXIT_NOT_DEPLOYED: "the stack was never deployed (no routing parameter)",
    EXIT_NOT_FOUND: "a resource the command needs does not exist",
}

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


class OpsError(Exception):
    """Stops a command: ``message`` goes to stderr, ``exit_code`` to the shell."""

    exit_code = EXIT_USAGE
    kind = "usage"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "hint": self.hint}


class UsageError(OpsError):
    exit_code = EXIT_USAGE
    kind = "usage"


class NoAwsAccessError(OpsError):
    exit_code = EXIT_NO_AWS
    kind = "no-aws-access"


class AccessDeniedError(OpsError):
    exit_code = EXIT_ACCESS_DENIED
    kind = "access-denied"


class StackNotDeployedError(OpsError):
    exit_code = EXIT_NOT_DEPLOYED
    kind = "not-deployed"


class ResourceMissingError(OpsError):
    exit_code = EXIT_NOT_FOUND
    kind = "not-found"


class NotFoundError(Exception):
    """An API said the resource does not exist (probes turn this into 'absent')."""

    def __init__(self, action: str, code: str, message: str) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action = action
        self.code = code


class CannotTellError(Exception):
    """The account could not answer this question (API not available, no data, transitional
    state); the check that asked reports cannot-tell with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def handles_errors(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    """Wrap a command handler: an ``OpsError`` (or a stack config error) becomes its message
    on stderr (and one JSON object on stdout with ``--json``) and its exit code."""
    from infra.config import ConfigError
    from infra.plan import PlanError

    @functools.wraps(fn)
    def wrapper(args: Any) -> int:
        try:
            return fn(args)
        except OpsError as error:
            return report_error(args, error)
        except (ConfigError, PlanError) as error:
            return report_error(args, UsageError(str(error)))

    return wrapper


def report_error(args: Any, error: OpsError) -> int:
    import json
    import sys

    if getattr(args, "json", False):
        print(json.dumps({"error": error.to_json(), "exit_code": error.exit_code}, indent=2))
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    return error.exit_code
