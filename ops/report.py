"""Shared rendering for the operator commands: checks with a verdict and the figure seen,
readable tables (rich) by default, and exactly one JSON object with ``--json``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from ops.errors import EXIT_CHECK_FAILED, EXIT_OK, CannotTellError


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CANNOT_TELL = "cannot-tell"


_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.CANNOT_TELL: "yellow"}


@dataclass(frozen=True)
class Check:
    """One gate: what was checked, what was seen, against what, and the verdict."""

    name: str
    verdict: Verdict
    figure: str
    threshold: str = ""
    detail: str = ""
    value: float | int | str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "figure": self.figure,
            "threshold": self.threshold,
            "detail": self.detail,
            "value": self.value,
        }


def check(name: str, threshold: str, decide: Callable[[], Check]) -> Check:
    """Run ``decide``; a ``CannotTellError`` it raises becomes a cannot-tell check with the reason."""
    try:
        return decide()
    except CannotTellError as why:
        return Check(name, Verdict.CANNOT_TELL, "cannot tell", threshold, why.reason)


def passed(
    name: str, figure: str, threshold: str = "", detail: str = "", value: Any = None
) -> Check:
    return Check(name, Verdict.PASS, figure, threshold, detail, value)


def failed(
    name: str, figure: str, threshold: str = "", detail: str = "", value: Any = None
) -> Check:
    return Check(name, Verdict.FAIL, figure, threshold, detail, value)


def verdict_of(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


def exit_code(checks: Iterable[Check]) -> int:
    return EXIT_OK if all(c.verdict is Verdict.PASS for c in checks) else EXIT_CHECK_FAILED


def summary(checks: Sequence[Check]) -> dict[str, int]:
    return {v.value: sum(1 for c in checks if c.verdict is v) for v in Verdict}


def checks_table(
    title: str,
    checks: Sequence[Check],
    *,
    header: str = "verdict",
    threshold_header: str = "needs",
    labels: Mapping[Verdict, str] | None = None,
    styles: Mapping[Verdict, str] | None = None,
) -> Table:
    labels = labels or {v: v.value for v in Verdict}
    styles = styles or _STYLE
    table = Table(title=title, show_lines=False, title_justify="left")
    table.add_column("check")
    table.add_column(header)
    table.add_column("seen")
    table.add_column(threshold_header)
    table.add_column("detail", overflow="fold")
    for c in checks:
        style = styles[c.verdict]
        table.add_row(c.name, f"[{style}]{labels[c.verdict]}[/]", c.figure, c.threshold, c.detail)
    return table


def key_value_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


UNWRAPPED_WIDTH = 100_000
"""The width a console gets off a terminal: wider than any line the commands print, so rich
never wraps a line nor folds or cuts a table cell (a table still takes only the width it needs)."""


def console(*, stderr: bool = False) -> Console:
    """The console the commands print to. On a terminal it fits the terminal (long cells wrap
    inside their column). Anywhere else (a pipe, a file, a test's capture) nothing is wrapped
    or cut: a URN or a cell value is printed whole, on one line, without colour codes. Never
    emoji codes: ``jobstream:a:A`` stays as written."""
    terminal = Console(highlight=False, emoji=False, soft_wrap=False, stderr=stderr)
    if terminal.is_terminal:
        return terminal
    return Console(
        highlight=False, emoji=False, soft_wrap=True, width=UNWRAPPED_WIDTH, stderr=stderr
    )


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


def fmt_int(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def fmt_money(value: float) -> str:
    return f"${value:,.2f}"
