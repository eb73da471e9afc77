"""``jobstream-worker --help`` and ``--check``: the installed console script, as a process."""

from __future__ import annotations

import os
import subprocess

from jobstream.contract import env
from jobstream.contract.exits import WorkerExit
from tests.runtime.worker.conftest import REPO, WORKER
from tests.runtime.worker.test_settings import VALID


def worker(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [str(WORKER), *args],
        env={**base, **(environ or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_variable_and_every_exit_status() -> None:
    done = worker("--help")
    assert done.returncode == 0
    for name in (env.HANDLER, env.CONSUMER, env.JOB_MESSAGE, env.DB_SSLROOTCERT):
        assert name in done.stdout, name
    for code in WorkerExit:
        assert f"  {int(code):<3} " in done.stdout, code


def test_check_validates_the_environment_and_imports_the_handler() -> None:
    done = worker("--check", environ={**VALID, env.HANDLER: "tests.runtime.worker.handlers:double"})
    assert done.returncode == 0, done.stderr
    assert "handler tests.runtime.worker.handlers:double are valid" in done.stderr


def test_check_names_a_handler_attribute_that_is_not_a_function() -> None:
    done = worker(
        "--check",
        environ={**VALID, env.HANDLER: "tests.runtime.worker.handlers:NOT_A_FUNCTION"},
    )
    assert done.returncode == WorkerExit.CONFIG
    assert "has no function 'NOT_A_FUNCTION'" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_environment_exits_78_with_one_line_naming_the_variables() -> None:
    done = worker()
    assert done.returncode == WorkerExit.CONFIG
    (line,) = done.stderr.strip().splitlines()
    assert "JOBSTREAM_CONSUMER = <unset>" in line and "JOBSTREAM_HANDLER = <unset>" in line
