"""The command-line benchmark's measuring order (the benchmark itself runs on demand only)."""

from __future__ import annotations

import pytest

from benchmarks import bench_cli


def test_each_round_runs_every_command_once_before_the_next_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []

    def wall(argv: list[str]) -> float:
        order.append(argv[0])
        return float(len(order))

    monkeypatch.setattr(bench_cli, "wall", wall)
    times = bench_cli.interleaved({"a": ["a"], "b": ["b"], "c": ["c"]}, rounds=2)
    assert order == ["a", "b", "c", "a", "b", "c"], "rounds must interleave the commands"
    assert times == {"a": [1.0, 4.0], "b": [2.0, 5.0], "c": [3.0, 6.0]}
