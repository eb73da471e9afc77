"""The ``jobstream`` command line: one subcommand per module in ``COMMAND_MODULES``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``handler`` (a function taking the parsed arguments and returning the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "ops.plan_cmd",
    "ops.status",
    "ops.parked",
    "ops.redrive",
    "ops.replay",
    "ops.preflight",
    "ops.triggers",
    "ops.cost",
    "ops.db_bootstrap",
    "ops.rehearse",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobstream",
        description="Plan, check and operate the jobstream migration from AWS Batch + SQS to Kafka.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
