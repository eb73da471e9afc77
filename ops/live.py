"""The light way into a live stack, for commands that never evaluate the Pulumi program
(``parked``, ``redrive``, ``replay``): no import of pulumi, pulumi_aws or ``components`` here or
in what this module imports (of ``infra`` only the stack config's pulumi-free modules, which
``ops.errors`` needs for its error types).

What such a command needs from the stack is its name (the physical names follow from it,
``jobstream.contract.names``), its region (``aws:region`` in ``Pulumi.<stack>.yaml``, or
``--region``) and the routing document in force (the SSM parameter). The full, validated stack
config (``infra.config``) is not read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from jobstream.contract.names import Names
from jobstream.contract.routing import Routing, RoutingError
from ops.aws_clients import (
    EXIT_CODES,
    Aws,
    CannotTellError,
    CannotTellStopError,
    NotFoundError,
    StackNotDeployedError,
    UsageError,
    aws_call,
)

PROJECT_FILE = "Pulumi.yaml"
REGION_KEY = "aws:region"


class StackAccess(Protocol):
    """What the live readers need of a stack (``LiveStack`` here, ``ops.probes.StackContext``)."""

    @property
    def stack(self) -> str: ...

    @property
    def names(self) -> Names: ...

    @property
    def aws(self) -> Aws: ...


@dataclass
class LiveStack:
    """A stack's name, physical names and an AWS session in its region."""

    stack: str
    names: Names
    aws: Aws
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def project_dir(start: Path | None = None) -> Path:
    """The directory holding ``Pulumi.yaml``: searched upwards from ``start`` (or the cwd), then
    the repository this package was installed from (as ``infra.plan.project_dir`` does)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents, Path(__file__).resolve().parent.parent):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    raise UsageError(f"no {PROJECT_FILE} found above {here}: run from the jobstream repository")


def stack_region(stack: str, directory: Path | None = None) -> str:
    """``aws:region`` of ``Pulumi.<stack>.yaml``; ``UsageError`` when the stack or key is missing."""
    import yaml

    directory = directory or project_dir()
    path = directory / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml")
        )
        raise UsageError(
            f"no stack {stack!r}: {path.name} does not exist (stacks: {', '.join(stacks) or 'none'})"
        )
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{path.name} is not valid YAML: {error}") from None
    config = document.get("config") if isinstance(document, dict) else None
    region = config.get(REGION_KEY) if isinstance(config, dict) else None
    if not isinstance(region, str) or not region.strip():
        raise UsageError(f"{path.name} does not set {REGION_KEY}", hint="or pass --region")
    return region.strip()


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--region", help="AWS region (default: the stack's aws:region)")
    parser.add_argument("--profile", help="AWS named profile (default: the usual boto3 chain)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")


def open_live_stack(args: argparse.Namespace) -> LiveStack:
    from infra.config import read_stack_config, stack_names

    region = args.region or stack_region(args.stack)
    # The names only (adopted resources keep theirs): a command that reads the live stack
    # must not fail on an unrelated bad value in the stack file.
    names = stack_names(args.stack, read_stack_config(args.stack, project_dir()))
    return LiveStack(stack=args.stack, names=names, aws=Aws(region, args.profile))


def read_routing(ctx: StackAccess) -> Routing:
    """The routing document in force; ``StackNotDeployedError`` when the parameter is missing."""
    name = ctx.names.routing_parameter
    try:
        with aws_call("ssm:GetParameter"):
            value = ctx.aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except NotFoundError:
        raise StackNotDeployedError(
            f"stack {ctx.stack!r} is not deployed in {ctx.aws.region}: SSM parameter {name} "
            "does not exist",
            hint=f"deploy it first (pulumi up --stack {ctx.stack}), or check --region/--profile",
        ) from None
    except CannotTellError as why:  # throttled, a server error: not a sign it is not deployed
        raise CannotTellStopError(
            f"cannot read the routing parameter {name}: {why.reason}",
            hint="AWS did not answer; run the command again",
        ) from None
    try:
        return Routing.from_json(value)
    except RoutingError as error:
        raise UsageError(
            f"routing parameter {name} is not a valid routing document: {error}"
        ) from None


def exit_codes_epilog(extra: str = "") -> str:
    """The exit codes for a command's ``--help`` (``argparse.RawDescriptionHelpFormatter``)."""
    lines = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"{extra}\n\nexit codes:\n{lines}".lstrip("\n")
