"""The ``jobstream`` command line.

Every command is declared once in ``COMMANDS``: its name, the module that implements it, the
one-line summary ``jobstream --help`` shows, and the exit codes it uses. The top-level help is
built from that table alone; a command's module is imported only when the command line names
it, and its ``register(subparsers)`` then adds the command's parser and sets ``handler`` (a
function taking the parsed arguments and returning the exit code). So ``jobstream --help`` and
the commands that do not evaluate the Pulumi program never import Pulumi: the ones that read a
stack's config get it from ``infra.config``, which imports neither Pulumi nor the components.

A new command: a module with ``register``, and one ``Command`` line here.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ops.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_CHECK_FAILED,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_NO_AWS,
    EXIT_NOT_DEPLOYED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    as_ops_error,
    exit_codes_epilog,
    report_error,
)

PROG = "jobstream"
INTERRUPTED = EXIT_INTERRUPTED
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""stdout's reader left early (141, as a shell reports a process SIGPIPE ended)."""

_LIVE = (EXIT_USAGE, EXIT_NO_AWS, EXIT_ACCESS_DENIED)
"""What every command that reads the live account can exit with besides its verdict."""


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    summary: str
    exit_codes: tuple[int, ...]
    exit_meanings: Mapping[int, str] = field(default_factory=dict)
    """What a code means for this command where ``EXIT_CODES``' general text says too little."""

    @property
    def epilog(self) -> str:
        return exit_codes_epilog(self.exit_codes, self.exit_meanings)


COMMANDS: tuple[Command, ...] = (
    Command(
        "plan",
        "ops.plan_cmd",
        "show every resource of a stack and phase, offline (no cloud, no Pulumi CLI)",
        (EXIT_OK, EXIT_USAGE),
        {EXIT_OK: "the plan was printed"},
    ),
    Command(
        "status",
        "ops.status",
        "show the live state of a stack: phase, queues, Batch jobs, MSK, lag, parity, alarms",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_DEPLOYED),
        {
            EXIT_OK: "every resource the phase needs is there and no alarm fires",
            EXIT_CHECK_FAILED: "a problem was found (listed in the output)",
        },
    ),
    Command(
        "parked",
        "ops.parked",
        "list what is parked in the DLQ, the failed-jobs capture and the dead-letter topic",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_DEPLOYED),
        {
            EXIT_OK: "nothing is parked in any place",
            EXIT_CHECK_FAILED: "something is parked, or a place cannot be read (cannot-tell)",
        },
    ),
    Command(
        "redrive",
        "ops.redrive",
        "put parked jobs back on the route the phase in force consumes",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_DEPLOYED, EXIT_NOT_FOUND, INTERRUPTED),
        {
            EXIT_OK: "every selected message that can be moved was moved (poison and no-body "
            "messages stay parked and are listed)",
            EXIT_CHECK_FAILED: "a copy was not accepted, a place cannot be read, a --job-id "
            "names no parked job, or the move was not confirmed (nothing is deleted that was not "
            "copied)",
            EXIT_USAGE: "usage or configuration error; also when confirmation is needed and "
            "stdin is not a terminal (pass --yes)",
            EXIT_NOT_FOUND: "the source place or the target route does not exist",
            INTERRUPTED: "interrupted: rerun to continue (nothing moved is moved twice)",
        },
    ),
    Command(
        "replay",
        "ops.replay",
        "re-publish to Kafka the dual-write copies a producer's repair log holds",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_DEPLOYED, EXIT_NOT_FOUND),
        {
            EXIT_OK: "every copy replayed reached Kafka and was counted (or nothing to replay)",
            EXIT_CHECK_FAILED: "some copies still fail (they stay in the log) or the "
            "SecondaryPublishRepaired metric could not be sent",
            EXIT_USAGE: "usage or configuration error; also when the repair log does not exist",
            EXIT_NOT_FOUND: "copies are due but the phase in force has no Kafka brokers",
        },
    ),
    Command(
        "preflight",
        "ops.preflight",
        "check the gates for moving a stack one phase up or down (reads the live account)",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_DEPLOYED),
        {
            EXIT_OK: "every gate passed: the stack may move",
            EXIT_CHECK_FAILED: "a gate failed or could not be decided (cannot-tell)",
        },
    ),
    Command(
        "triggers",
        "ops.triggers",
        "review the migration triggers: jobs/day, queue latency, error rate",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_FOUND),
        {
            EXIT_OK: "the review was produced (the verdict is in the output)",
            EXIT_CHECK_FAILED: "AWS did not answer a call the review needs (cannot tell)",
            EXIT_NOT_FOUND: "the stack's job queue does not exist",
        },
    ),
    Command(
        "cost",
        "ops.cost",
        "estimate the monthly cost of a stack per component and per phase (offline)",
        (EXIT_OK, EXIT_USAGE),
        {EXIT_OK: "the estimate was printed"},
    ),
    Command(
        "db-bootstrap",
        "ops.db_bootstrap",
        "create or rotate the app database user and fill the proxy's app-user secret",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_FOUND),
        {
            EXIT_OK: "the user and the secret are in place",
            EXIT_CHECK_FAILED: "the command could not finish (nothing, or only idempotent "
            "grants, applied)",
            EXIT_NO_AWS: "cannot reach AWS or the database",
        },
    ),
    Command(
        "adopt",
        "ops.adopt",
        "import the running SQS queues and AWS Batch setup into a stack",
        (EXIT_OK, EXIT_CHECK_FAILED, *_LIVE, EXIT_NOT_FOUND),
        {
            EXIT_OK: "the values were derived (and written with --write); no adopted resource "
            "would be replaced",
            EXIT_CHECK_FAILED: "an adopted resource would be replaced by the first `pulumi up` "
            "(a blocker), or the live settings make an invalid config (nothing written)",
            EXIT_NOT_FOUND: "a named resource does not exist, or nothing to adopt was found",
        },
    ),
    Command(
        "rehearse",
        "ops.rehearse",
        "run the whole migration locally on the stack's own resources, with real faults",
        (EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE),
        {
            EXIT_OK: "every published job applied exactly once, what was parked is what the "
            "faults park, every gate passed",
            EXIT_CHECK_FAILED: "a job lost or applied twice, a parked job unexplained or "
            "missing, or a gate that never passed",
        },
    ),
)
COMMANDS_BY_NAME: Mapping[str, Command] = {c.name: c for c in COMMANDS}
COMMAND_MODULES: tuple[str, ...] = tuple(c.module for c in COMMANDS)


class CommandLineError(Exception):
    """A command line argparse rejected (raised instead of printing, so ``main`` can also
    answer in JSON)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse with errors as exceptions (the subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(self, message)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a text with line breaks (the exit-code epilog) is
    printed as written instead of being re-wrapped into one paragraph."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the full parser of the command it names, a line of the summary
    for every other command. Without ``argv``, every command's full parser (imports them all)."""
    parser = Parser(
        prog=PROG,
        description="Plan, check and operate the jobstream migration from AWS Batch + SQS to Kafka.",
        epilog=exit_codes_epilog(EXIT_CODES)
        + "\n\nEach command's --help lists the codes it uses. 'jobstream COMMAND --help' for more.",
        formatter_class=HelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(COMMANDS_BY_NAME) if argv is None else {_command_named(argv)}
    for command in COMMANDS:
        if command.name in wanted:
            _register(subparsers, command)
        else:
            subparsers.add_parser(command.name, help=command.summary, add_help=False)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command of a command line: its first word that names one, else its first word that
    is not an option (the top level has no option but -h, so an option before the command,
    ``jobstream --json status``, is the command's, misplaced)."""
    words = [a for a in argv if not a.startswith("-")]
    return next((a for a in words if a in COMMANDS_BY_NAME), words[0] if words else None)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args``, except that an argument no parser took is reported by the parser
    of the command it was given to (with that command's usage), and an option put before the
    command is reported as misplaced rather than unrecognized."""
    command = _command_named(argv)
    misplaced = list(argv[: argv.index(command)]) if command in argv else list(argv)
    misplaced = [a for a in misplaced if a not in ("-h", "--help")]
    if command in COMMANDS_BY_NAME and misplaced:
        raise CommandLineError(
            _subparsers(parser).choices[command],
            f"{' '.join(misplaced)} must come after the command: "
            f"{PROG} {command} {' '.join(misplaced)} ...",
        )
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = _subparsers(parser).choices.get(getattr(args, "command", None) or "", parser)
        raise CommandLineError(sub, f"unrecognized arguments: {' '.join(extras)}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> Any:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # pyright: ignore[reportPrivateUsage]


def _register(subparsers: Any, command: Command) -> None:
    importlib.import_module(command.module).register(subparsers)
    sub: argparse.ArgumentParser = subparsers.choices[command.name]
    sub.epilog = f"{sub.epilog}\n\n{command.epilog}" if sub.epilog else command.epilog
    if sub.formatter_class is argparse.HelpFormatter:
        sub.formatter_class = HelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = _parse(parser, argv)
    except CommandLineError as rejected:
        _usage_error(rejected, json_errors=_asks_for_json(argv))
        raise SystemExit(EXIT_USAGE) from None  # as argparse itself does
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        ops_error = as_ops_error(error)
        if ops_error is None:
            raise
        return report_error(args, ops_error)


def _asks_for_json(argv: Sequence[str]) -> bool:
    """Whether the command line has ``--json``, also as the prefix argparse accepts for it
    (``--js``, ``--jso``)."""
    return any(len(a) >= 4 and "--json".startswith(a) for a in argv)


def _usage_error(rejected: CommandLineError, *, json_errors: bool) -> None:
    usage = rejected.parser.format_usage().strip()
    if json_errors:
        print(
            json.dumps(
                {
                    "error": {"kind": "usage", "message": rejected.message, "hint": usage},
                    "exit_code": EXIT_USAGE,
                },
                indent=2,
            )
        )
    print(usage, file=sys.stderr)
    print(f"{rejected.parser.prog}: error: {rejected.message}", file=sys.stderr)


def entry_point() -> NoReturn:
    """The ``jobstream`` console script: ``main`` with the cyclic garbage collector off, then
    exit.

    A command is one short process. The collector only costs it time: each plan leaves ~90k
    objects for it (~5 MB of cycles, freed when the process ends), and collecting them took
    ~0.1 s a plan. Before exiting, every object is moved to the permanent generation
    (``gc.freeze``), so that the interpreter's shutdown does not traverse them once more: after
    a plan they are ~500k, most of them pulumi_aws's classes, and that took ~0.8 s of a 3 s
    ``jobstream plan``."""
    gc.disable()
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of stdout left early (`| head`): stop quietly with the status a process
        # killed by SIGPIPE has, as the shell's own tools do. Python's advice: point stdout at
        # devnull so that the flush at shutdown does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
