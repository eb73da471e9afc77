"""Exit codes and errors of the operator commands (standard library only: every command's
parser and error path load this without boto3 or Pulumi).

Exit codes (docs/operations.md; each command's ``--help`` lists the ones it uses):

| code | meaning |
|---|---|
| 0 | every check passed (status: the stack is as its phase needs) |
| 1 | a check failed or could not be decided (cannot-tell) |
| 2 | usage or configuration error (bad flags, unknown stack, bad routing document) |
| 3 | cannot reach AWS: no credentials, expired credentials, no network |
| 4 | AWS denied an API call (AccessDenied): the message names the action |
| 5 | the stack was never deployed: its routing parameter does not exist |
| 6 | a resource the command needs does not exist |

An error stops a command with its message (and hint) on stderr and its exit code; with
``--json`` stdout also gets exactly one object: ``{"error": {"kind", "message", "hint"},
"exit_code": n}``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infra.config import ConfigError, PlanError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_AWS = 3
EXIT_ACCESS_DENIED = 4
EXIT_NOT_DEPLOYED = 5
EXIT_NOT_FOUND = 6
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as a shell reports it); not in ``EXIT_CODES``: every command can."""

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "all checks passed",
    EXIT_CHECK_FAILED: "a check failed or could not be decided (cannot-tell)",
    EXIT_USAGE: "usage or configuration error",
    EXIT_NO_AWS: "cannot reach AWS (credentials or network)",
    EXIT_ACCESS_DENIED: "AWS denied an API call",
    EXIT_NOT_DEPLOYED: "the stack was never deployed (no routing parameter)",
    EXIT_NOT_FOUND: "a resource the command needs does not exist",
}


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


class CannotTellStopError(OpsError):
    """A command that must stop because the account did not answer (exit 1)."""

    exit_code = EXIT_CHECK_FAILED
    kind = "cannot-tell"


def as_ops_error(error: Exception) -> OpsError | None:
    """The ``OpsError`` an exception stands for: itself, a usage error for a stack config or
    stack file error, a cannot-tell stop (exit 1) for a question the account did not answer
    (throttled, a server error); ``None`` for anything else (a bug: let it show its
    traceback)."""
    if isinstance(error, OpsError):
        return error
    if isinstance(error, ConfigError | PlanError):
        return UsageError(str(error))
    if isinstance(error, CannotTellError):
        return CannotTellStopError(error.reason)
    return None


def handles_errors(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    """Wrap a command handler: an ``OpsError`` (or a stack config error) becomes its message
    on stderr (and one JSON object on stdout with ``--json``) and its exit code."""

    @functools.wraps(fn)
    def wrapper(args: Any) -> int:
        try:
            return fn(args)
        except (OpsError, ConfigError, PlanError, CannotTellError) as error:
            ops_error = as_ops_error(error)
            assert ops_error is not None
            return report_error(args, ops_error)

    return wrapper


def report_error(args: Any, error: OpsError) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": error.to_json(), "exit_code": error.exit_code}, indent=2))
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    return error.exit_code


def exit_codes_epilog(codes: Iterable[int], meanings: Mapping[int, str] | None = None) -> str:
    """The ``exit codes:`` block of a command's ``--help``: each code it can return, with the
    meaning from ``EXIT_CODES`` unless ``meanings`` says what it means for this command."""
    meanings = meanings or {}
    lines = ["exit codes:"]
    for code in sorted(set(codes)):
        lines.append(f"  {code}  {meanings[code] if code in meanings else EXIT_CODES[code]}")
    return "\n".join(lines)
