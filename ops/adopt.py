"""``jobstream adopt``: take over the platform that runs today instead of building a second one.

Reads the running SQS job queue and DLQ and the AWS Batch compute environment, job queue and
job definition (by the ids in the stack's config or on the command line, else discovered: the
queue and the Batch job queue by the stack's names, the DLQ from the queue's redrive policy,
the compute environment from the job queue), and derives the config values that make the
stack's inputs equal their live settings, so that the import changes nothing that config can
say. It then evaluates the offline plan with those values and compares each adopted resource's
inputs with what it read: every difference left is one config cannot express, listed with what
the first ``pulumi up`` does about it (an in-place update, or a replacement: a blocker, by
``infra.replacement``'s provider rules). ``--write`` puts the values into ``Pulumi.<stack>.yaml``
keeping its comments and order.

Pulumi's ``import`` option (https://www.pulumi.com/docs/iac/concepts/resources/options/import/):
since pulumi/pulumi#19339 an import whose inputs differ from the resource succeeds and the same
``pulumi up`` then updates the resource to the program's inputs (pulumi/docs#16580), so a
difference is a change the first ``up`` makes, not a failed import.

The parts: ``ops.adoption.live`` (reading and deriving), ``ops.adoption.compare`` (against the
plan), ``ops.adoption.model`` (the result); this module is the command.

Not adoptable here, and why (README, "Adopting a running platform"): the RDS instance and the
RDS Proxy (the stack builds its own VPC; importing the instance would move it into that VPC,
with an outage, and swap its parameter group; the proxy's subnets cannot change without a new
proxy; front a running instance with ``existingDbInstanceId`` instead), and whatever submits
Batch jobs from SQS today (the stack's EventBridge Pipe replaces it).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra import config as config_module
from infra.config import NAMESPACE, ConfigError, config_string, project_dir, read_stack_config
from ops.adoption.compare import differences
from ops.adoption.live import Reader
from ops.adoption.model import Adoption
from ops.aws_clients import (
    Aws,
    ResourceMissingError,
    UsageError,
)
from ops.errors import EXIT_CHECK_FAILED, EXIT_OK, handles_errors
from ops.report import console, print_json
from ops.stack_file import Value, write_values


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "adopt",
        help="import the running SQS queues and AWS Batch setup into a stack",
        description=(
            "Read the running SQS job queue and DLQ and the AWS Batch compute environment, "
            "job queue and job definition; print the config values that make the stack's "
            "inputs match them (so the import changes nothing config can say) and every "
            "difference config cannot express, with what the first `pulumi up` would do about "
            "it. --write puts the values into Pulumi.<stack>.yaml, keeping its comments."
        ),
    )
    parser.add_argument("--stack", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--region", help="AWS region (default: the stack's aws:region)")
    parser.add_argument("--profile", help="AWS named profile (default: the usual boto3 chain)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.add_argument(
        "--write", action="store_true", help="write the values into Pulumi.<stack>.yaml"
    )
    parser.add_argument("--job-queue", metavar="NAME|URL", help="the SQS job queue")
    parser.add_argument(
        "--dead-letter-queue",
        metavar="NAME|URL",
        help="the SQS DLQ (default: the job queue's redrive target)",
    )
    parser.add_argument("--batch-job-queue", metavar="NAME|ARN", help="the Batch job queue")
    parser.add_argument(
        "--compute-environment",
        metavar="NAME",
        help="the Batch compute environment (default: the job queue's)",
    )
    parser.add_argument(
        "--job-definition",
        metavar="NAME|ARN",
        help="the Batch job definition (default: the latest active revision of its name)",
    )
    parser.set_defaults(handler=run)


# ---- the command -----------------------------------------------------------------------------


@handles_errors
def run(args: argparse.Namespace) -> int:
    directory = project_dir()
    raw = read_stack_config(args.stack, directory)
    source = f"Pulumi.{args.stack}.yaml"
    cfg = config_module.parse(raw, stack=args.stack, source=source)
    aws = Aws(args.region or cfg.region, args.profile)
    if aws.region != cfg.region:
        raise UsageError(
            f"--region {aws.region} is not the stack's region ({cfg.region}): a stack imports "
            "resources of its own region only"
        )
    reader = Reader(args, cfg, aws)
    reader.queues()
    reader.batch()
    result = reader.result
    if not result.adopted:
        raise ResourceMissingError(
            f"nothing to adopt in {aws.region}: no SQS queue or Batch job queue under the "
            f"stack's names ({reader.derived.job_queue}, {reader.derived.batch_job_queue})",
            hint="name them: --job-queue, --batch-job-queue, --job-definition",
        )
    result.notes.append(
        "the stack's default tags (Project, Environment, ManagedBy) are added to every adopted "
        "resource: a tag update"
    )

    # An empty value unsets an optional key (what --write's removal does to the file).
    overrides = {key: _config_text(value) for key, value in result.values.items()}
    adopted_raw = raw | overrides
    try:
        config_module.parse(
            adopted_raw, stack=args.stack, source=f"{source} with the adopted values"
        )
    except ConfigError as error:
        result.problems.extend(f"{NAMESPACE}:{p.key}: {p.allowed}" for p in error.problems)
    if not result.problems:
        from infra.plan import run_plan

        plan = run_plan(args.stack, overrides=overrides, directory=directory)
        differences(result, reader.live, plan)
        if args.write and not result.blockers:  # never a config whose first `up` replaces one
            result.written = write_values(directory / source, result.values)
    code = EXIT_CHECK_FAILED if result.problems or result.blockers else EXIT_OK
    _print(args, result, source, code)
    return code


def _config_text(value: Value) -> str:
    """What the engine would hand the program for ``value`` written to the stack file; an empty
    string for a removed key (an optional key's parser reads it as unset)."""
    return "" if value is None else config_string(value)


def _print(args: argparse.Namespace, result: Adoption, source: str, code: int) -> None:
    if args.json:
        print_json({**result.to_json(), "exit_code": code})
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    found = Table(title=f"jobstream adopt: stack {result.stack}, {result.region}")
    for column in ("adopts", "import id", "found by"):
        found.add_column(column)
    for a in result.adopted:
        found.add_row(a.kind, escape(a.import_id), a.found_by)
    out.print(found)
    values = Table(title=f"config values ({source})")
    values.add_column("key")
    values.add_column("value")
    for key, value in result.values.items():
        values.add_row(key, "(removed)" if value is None else escape(_config_text(value)))
    out.print(values)
    if result.differences:
        out.print("What config cannot express (the first `pulumi up` changes it):")
        for d in result.differences:
            effect = "[bold red]REPLACE (blocker)[/]" if d.effect == "replace" else d.effect
            out.print(
                f"  {effect}  {escape(d.resource)}  {escape(d.input)}: "
                f"{escape(_short(d.live, out.is_terminal))} -> "
                f"{escape(_short(d.stack, out.is_terminal))}"
            )
            out.print(f"      {d.why}", markup=False)
    else:
        out.print("No difference left: the import changes nothing on the adopted resources.")
    for note in result.notes:
        out.print(f"note: {note}", markup=False)
    for problem in result.problems:
        out.print(f"[bold red]cannot use these values[/]: {escape(problem)}")
    if result.blockers:
        out.print(
            f"[bold red]Not written[/]: the first `pulumi up` would replace "
            f"{len(result.blockers)} adopted resource(s) (REPLACE above). Change the live "
            f"resource or the stack so that they agree, then run again."
            + (" Nothing was written." if args.write else "")
        )
    elif result.written:
        out.print(f"Wrote {source}. Next: `pulumi preview --stack {result.stack}` shows imports.")
    elif args.write and not result.problems:
        out.print(f"{source} already holds these values.")
    elif not result.problems:
        out.print(f"Run again with --write to put these values into {source}.")


def _short(value: Any, on_terminal: bool) -> str:
    """A value as the table shows it: cut at 100 characters on a terminal only (off one, the
    tables cut nothing)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if not on_terminal or len(text) <= 100:
        return text
    return text[:97] + "... (--json shows all)"
