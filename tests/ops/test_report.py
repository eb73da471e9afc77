"""The commands' console: fitted to a terminal, never wrapped or cut anywhere else."""

from __future__ import annotations

import pytest
from rich.table import Table

from ops.report import console

LONG = "urn:pulumi:prod::jobstream::" + "jobstream:a:A$" * 12 + "aws:sqs/queue:Queue::jobs"


def test_off_a_terminal_a_long_line_stays_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    console().print(f"+ {LONG}")
    assert capsys.readouterr().out == f"+ {LONG}\n"


def test_off_a_terminal_a_table_cell_is_neither_folded_nor_cut(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    table = Table()
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("urn", LONG)
    console().print(table)
    out = capsys.readouterr().out
    assert any(LONG in line for line in out.splitlines())
    assert "…" not in out


def test_off_a_terminal_there_are_no_colour_codes(capsys: pytest.CaptureFixture[str]) -> None:
    console().print("[bold red]error:[/] plain")
    assert capsys.readouterr().out == "error: plain\n"
