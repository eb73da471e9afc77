"""What every recovery command (parked, redrive, replay) shares: --help with the exit codes, one
JSON object and a clear error without credentials, and no import of Pulumi (issue 14: commands
that do not evaluate the Pulumi program stay light)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ops import cli
from tests.ops.conftest import STACK

Run = Any
COMMANDS = ("parked", "redrive", "replay")
REPO = Path(__file__).resolve().parents[2]


def _arguments(command: str, tmp_path: Path) -> list[str]:
    log = tmp_path / "repair.jsonl"
    log.write_text("")
    return {
        "parked": [],
        "redrive": ["--source", "failed-jobs", "--yes"],
        "replay": ["--repair-log", str(log)],
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_recovery_command_has_help_with_the_exit_codes(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "--stack" in out and "--json" in out
    assert out.rstrip().endswith(cli.COMMANDS_BY_NAME[command].epilog), (
        f"{command} --help does not end with its exit codes"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_without_credentials_each_recovery_command_exits_3_with_one_json_object(
    command: str, aws_env: None, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    with socket.socket() as s:  # nothing may leave the machine
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
    result = run(command, "--stack", STACK, "--json", *_arguments(command, tmp_path))
    assert result.code == 3
    assert result.json() == {
        "error": {
            "kind": "no-aws-access",
            "message": "no usable AWS credentials for ssm:GetParameter: Unable to locate "
            "credentials",
            "hint": "set AWS_PROFILE or pass --profile, or export credentials, then retry",
        },
        "exit_code": 3,
    }
    assert "Traceback" not in result.err


def test_an_unknown_stack_is_a_usage_error_naming_the_stacks(run: Run) -> None:
    result = run("parked", "--stack", "nosuch")
    assert result.code == 2
    assert "no stack 'nosuch': Pulumi.nosuch.yaml does not exist (stacks: dev, prod)" in result.err


def test_the_recovery_commands_import_neither_pulumi_nor_the_stack_program() -> None:
    """Imported and run (to the stack lookup) in a fresh interpreter: no pulumi, pulumi_aws,
    components or program module is loaded (``infra.config`` and its modules, which read stack
    files without Pulumi, may be)."""
    script = textwrap.dedent(
        """
        import argparse, sys
        import ops.parked, ops.redrive, ops.replay
        for module in (ops.parked, ops.redrive, ops.replay):
            parser = argparse.ArgumentParser()
            module.register(parser.add_subparsers())
        args = argparse.Namespace(stack="nosuch", region=None, profile=None, json=True)
        assert ops.parked.run(args) == 2
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("pulumi", "pulumi_aws", "pulumi_kafka", "infra", "components")
            and m != "infra" and m != "infra.config" and not m.startswith("infra.config.")
        )
        print(" ".join(heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "", f"heavy modules imported: {done.stdout}"


def test_the_runbook_names_the_alarms_that_call_for_each_recovery_command() -> None:
    """The alarms the runbook sends the operator from exist under those names, and the runbook
    and docs/operations.md say when to run every recovery command."""
    from components.monitoring import BatchMonitoring, QueueMonitoring, batch_alarms, queue_alarms

    alarms = {
        a.slug
        for a in queue_alarms(QueueMonitoring("q", "q-dlq", 1000, 900))
        + batch_alarms(BatchMonitoring("jq", "failed", "rule"))
    }
    readme = (REPO / "README.md").read_text()
    runbook = readme[readme.index("## Runbook") : readme.index("## What gets built")]
    operations = (REPO / "docs" / "operations.md").read_text()
    for alarm in ("sqs-dead-letters", "batch-failed-jobs"):
        assert alarm in alarms, f"no alarm {alarm} in components/monitoring/alarms.py"
        assert f"`{alarm}`" in runbook and f"`{alarm}`" in operations
    for command in COMMANDS:
        assert f"jobstream {command}" in runbook
        assert f"`jobstream {command} --stack S" in operations
