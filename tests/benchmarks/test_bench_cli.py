"""The command-line benchmark's measuring order (the benchmark itself runs on demand only)."""

from __future__ import annotations

import pytest

from benchmarks import bench_cli


def test_each_round_runs_every_command_once_each_starting_one_further_along(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []

    def wall(argv: list[str]) -> float:
        order.append(argv[0])
        return float(len(order))

    monkeypatch.setattr(bench_cli, "wall", wall)
    times = bench_cli.interleaved({"a": ["a"], "b": ["b"], "c": ["c"]}, rounds=2)
    assert order == ["a", "b", "c", "b", "c", "a"], "rounds must interleave and rotate"
    assert times == {"a": [1.0, 6.0], "b": [2.0, 4.0], "c": [3.0, 5.0]}
