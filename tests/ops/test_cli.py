"""The ``jobstream`` command line itself: a light start, exit codes in every ``--help``, usage
errors as JSON, and the command table."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops import cli
from ops.errors import EXIT_CODES, EXIT_NO_AWS, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pulumi", "pulumi_aws")
LIGHT_COMMANDS = (
    "status",
    "preflight",
    "triggers",
    "db-bootstrap",
    "parked",
    "redrive",
    "replay",
    "rehearse",
)


def _closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_aws_access() -> dict[str, str]:
    """The environment of an operator with no credentials and no way out of the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{_closed_local_port()}",
    )
    return env


def imports_of(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -m ops.cli ARGV`` in a fresh interpreter (``-X importtime``): the result and
    every module the command imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ops.cli", *argv],
        cwd=ROOT,
        env=_without_aws_access(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "ops.cli" in modules or "argparse" in modules, result.stderr[-2000:]
    return result, modules


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


# ---- a light start --------------------------------------------------------------------------


def test_help_does_not_import_pulumi() -> None:
    result, modules = imports_of("--help")
    assert result.returncode == 0
    assert "status" in result.stdout and "plan" in result.stdout
    assert heavy(modules) == set()


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_help_of_a_command_that_reads_the_live_account_does_not_import_pulumi(
    command: str,
) -> None:
    result, modules = imports_of(command, "--help")
    assert result.returncode == 0 and "exit codes:" in result.stdout
    assert heavy(modules) == set()


def test_status_without_credentials_fails_with_its_error_and_without_pulumi() -> None:
    result, modules = imports_of("status", "--stack", "dev")
    assert result.returncode == EXIT_NO_AWS
    assert "error: no usable AWS credentials for ssm:GetParameter" in result.stderr
    assert "Traceback" not in result.stderr
    assert heavy(modules) == set()
    assert "infra.config" in modules  # the stack's region and names came from its config


def test_plan_imports_the_program() -> None:
    """The other side of the light start: the offline plan does load Pulumi (so the test above
    would see it if a light command did)."""
    result, modules = imports_of("plan", "--stack", "dev", "--phase", "1", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"pulumi", "pulumi_aws"} <= heavy(modules)


# ---- exit codes in --help -------------------------------------------------------------------


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_every_commands_help_ends_with_the_exit_codes_it_uses(
    command: cli.Command, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command.name, "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    epilog = help_text[help_text.index("exit codes:") :].splitlines()
    assert epilog[0] == "exit codes:"
    listed = {int(line.split()[0]): line.split(None, 1)[1] for line in epilog[1:] if line.strip()}
    assert set(listed) == set(command.exit_codes) and EXIT_USAGE in listed
    for code, meaning in listed.items():
        meanings = command.exit_meanings
        assert meaning == (meanings[code] if code in meanings else EXIT_CODES[code])


def test_top_level_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert f"  {code}  {meaning}" in out


def test_operations_doc_lists_the_exit_codes_as_the_code_defines_them() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Exit codes") :]
    rows = dict(re.findall(r"^\| (\d) \| ([^|]+?) \|$", section, flags=re.MULTILINE))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


# ---- the command table ----------------------------------------------------------------------


class _Recorder:
    """Stands in for argparse's subparsers: records what a command's ``register`` adds."""

    def __init__(self) -> None:
        self.added: dict[str, dict[str, Any]] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        self.added[name] = kwargs
        return argparse.ArgumentParser(prog=name)


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_each_module_registers_the_command_the_table_names_with_its_summary(
    command: cli.Command,
) -> None:
    import importlib

    recorder = _Recorder()
    importlib.import_module(command.module).register(recorder)
    assert list(recorder.added) == [command.name]
    assert recorder.added[command.name]["help"] == command.summary


def test_only_the_named_command_gets_its_full_parser() -> None:
    parser = cli.build_parser(["status", "--stack", "dev"])
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # pyright: ignore[reportPrivateUsage]
    full = {name for name, p in subparsers.choices.items() if p.add_help}
    assert full == {"status"}


# ---- usage errors ---------------------------------------------------------------------------


def test_a_usage_error_with_json_is_one_json_object_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["plan", "--phase", "9", "--json"])
    assert done.value.code == EXIT_USAGE
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["exit_code"] == EXIT_USAGE and document["error"]["kind"] == "usage"
    assert "--phase" in document["error"]["message"]
    assert "usage: jobstream plan" in captured.err


def test_a_usage_error_without_json_prints_only_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["status"])
    assert done.value.code == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "the following arguments are required: --stack" in captured.err


def test_rehearse_errors_with_json_have_every_commands_error_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["rehearse", "--steps", "1,x", "--json"]) == EXIT_USAGE
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"error", "exit_code"} and document["exit_code"] == EXIT_USAGE
    assert set(document["error"]) == {"kind", "message", "hint"}
    assert "--steps" in document["error"]["message"]


def test_rehearse_refuses_a_set_phase_since_the_steps_choose_the_phases(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["rehearse", "--set", "jobstream:phase=2", "--json"]) == EXIT_USAGE
    assert "--steps" in json.loads(capsys.readouterr().out)["error"]["message"]


REPLAY = ("--stack", "dev", "--repair-log", "producer-1.repair.jsonl")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["status", "--stack", "dev", "--parity-window-hours", "0"], "--parity-window-hours"),
        (["status", "--stack", "dev", "--parity-window-hours", "-5"], "--parity-window-hours"),
        (["status", "--stack", "dev", "--parity-window-hours", "nan"], "--parity-window-hours"),
        (
            ["preflight", "--stack", "dev", "--to-phase", "4", "--window-hours", "inf"],
            "--window-hours",
        ),
        (["db-bootstrap", "--stack", "dev", "--port", "0"], "--port"),
        (["db-bootstrap", "--stack", "dev", "--port", "70000"], "--port"),
        (["db-bootstrap", "--stack", "dev", "--connect-timeout", "-1"], "--connect-timeout"),
        (["cost", "--stack", "dev", "--jobs-per-day", "-1"], "--jobs-per-day"),
        (["redrive", "--stack", "dev", "--source", "dlq", "--limit", "0"], "--limit"),
        (["parked", "--stack", "dev", "--limit", "0"], "--limit"),
        (["parked", "--stack", "dev", "--kafka-timeout", "inf"], "--kafka-timeout"),
        (
            ["redrive", "--stack", "dev", "--source", "dlq", "--kafka-timeout", "-1"],
            "--kafka-timeout",
        ),
        (["parked", "--stack", "dev", "--kafka-timeout", "1e10"], "--kafka-timeout"),
        # librdkafka: 0 ms is no delivery timeout at all; past 2**31-1 ms the producer refuses
        (["replay", *REPLAY, "--delivery-timeout", "0"], "--delivery-timeout"),
        (["replay", *REPLAY, "--delivery-timeout", "2147484"], "--delivery-timeout"),
        (["replay", *REPLAY, "--delivery-timeout", "nan"], "--delivery-timeout"),
        (["replay", *REPLAY, "--delivery-timeout", "inf"], "--delivery-timeout"),
        (["replay", *REPLAY, "--pending-older-than", "inf"], "--pending-older-than"),
        (["replay", *REPLAY, "--pending-older-than", "-1"], "--pending-older-than"),
        # the trigger overrides take what their stack config keys take (0 fell back to the key's
        # value, a negative count or NaN made a trigger that can never, or always, be met)
        (["triggers", "--stack", "dev", "--sustained-days", "0"], "--sustained-days"),
        (["triggers", "--stack", "dev", "--sustained-days", "8"], "--sustained-days"),
        (["triggers", "--stack", "dev", "--jobs-per-day", "-5"], "--jobs-per-day"),
        (["triggers", "--stack", "dev", "--latency-seconds", "nan"], "--latency-seconds"),
        (["triggers", "--stack", "dev", "--latency-seconds", "0"], "--latency-seconds"),
        (["triggers", "--stack", "dev", "--max-error-rate", "nan"], "--max-error-rate"),
        (["triggers", "--stack", "dev", "--max-error-rate", "1.5"], "--max-error-rate"),
        (["preflight", "--stack", "dev", "--to-phase", "4", "--min-parity", "nan"], "--min-parity"),
        # a rehearsal with no producer, no time in a step or no rate publishes no job: none lost
        (["rehearse", "--producers", "0"], "--producers"),
        (["rehearse", "--consumers", "0"], "--consumers"),
        (["rehearse", "--step-seconds", "0"], "--step-seconds"),
        (["rehearse", "--sqs-rate", "nan"], "--sqs-rate"),
        (["rehearse", "--kafka-rate", "-1"], "--kafka-rate"),
    ],
)
def test_a_value_a_command_cannot_use_is_a_usage_error_before_any_call(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--json"])
    assert done.value.code == EXIT_USAGE, f"{' '.join(argv)} was accepted"
    assert flag in json.loads(capsys.readouterr().out)["error"]["message"]


def test_a_reader_that_leaves_early_ends_the_command_quietly_with_141() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` gone before the first line: every write fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ops.cli", "status", "--stack", "nope", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
        )
    finally:
        os.close(write_end)
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


def test_a_usage_error_with_json_abbreviated_is_one_json_object_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["status", "--stack", "dev", "--js", "--parity-window-hours", "abc"])
    assert json.loads(capsys.readouterr().out)["exit_code"] == EXIT_USAGE


def test_an_option_before_the_command_is_reported_as_misplaced_with_the_commands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """argparse alone said "unrecognized arguments: --json --stack dev", naming a --stack that
    is right."""
    with pytest.raises(SystemExit) as done:
        cli.main(["--json", "status", "--stack", "dev"])
    assert done.value.code == EXIT_USAGE
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["message"] == "--json must come after the command: jobstream status --json ..."
    assert error["hint"].startswith("usage: jobstream status")


def test_an_argument_no_parser_took_is_reported_with_the_commands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["status", "--stack", "dev", "--frob", "--json"])
    assert done.value.code == EXIT_USAGE
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["message"] == "unrecognized arguments: --frob"
    assert error["hint"].startswith("usage: jobstream status"), error["hint"]
    assert "jobstream status: error: unrecognized arguments: --frob" in captured.err


def test_top_level_help_before_the_command_is_still_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["-h", "status"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: jobstream [-h] COMMAND")
