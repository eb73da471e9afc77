"""How much of an offline plan's time this repository's code can account for: the plans after
the first, in one process, against the rest (the Pulumi SDK, asyncio, protobuf).

Run on demand (not part of the test suite; ``make bench-plan``):

    .venv/bin/python -m benchmarks.plan_time [--rounds 3] [--json]

Every stack x phase is evaluated once to warm the process up (the imports, pulumi_aws's lazy
submodules), then ``--rounds`` pairs of rounds more: one as is, one with this repository's
entry points timed, by the CPU time of the thread that runs them (``time.thread_time``: under
the interpreter lock a thread that waits for it is not charged):

- the program's declarations: ``infra.stack.build``, which constructs every component and
  resource, less the SDK's ``Resource.__init__``, ``Output.apply``, ``Output.all``,
  ``Output.from_input`` and invokes (pulumi_aws's generated constructors and argument classes
  are included);
- the program's callbacks: the functions defined in this repository that are given to
  ``Output.apply``, run later by the loop (the SDK's own, such as those of
  ``Output.from_input`` lifting a list or dict of outputs, count as the SDK's);
- the mocks: ``PlanMocks.new_resource`` and ``PlanMocks.call``;
- the recording: ``RecordingMonitor.RegisterResource`` less the SDK's ``MockMonitor`` part.

Each is charged its own time: the SDK's ``MockMonitor.RegisterResource`` inside the recording,
and the mocks inside it, are taken out of the recording's. What is left of a plan's
time when these are taken away is a floor for the SDK under this program: a plan after the
first takes at least that much whatever this repository's code costs. Issue 14's ratios need
each plan after the first to take at most (target - 1) x one plan / (plans - 1), with one plan
as ``benchmarks/bench_cli.py`` measures it (a fresh process: the imports and the first
evaluation).

Sampling profilers mislead here: under the interpreter lock a sampler thread gets its turn
mostly when another thread blocks in a system call (``epoll``, the self-pipe write of
``call_soon_threadsafe``), and tracing profilers (cProfile) inflate the SDK's many small calls.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.arguments import positive_int

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("program declarations", "program callbacks", "mocks", "recording")


@dataclass
class Timers:
    """CPU seconds by part, each call charged its own time only: a timed call inside another
    is taken out of the outer one's time (per thread)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    _stacks: threading.local = field(default_factory=threading.local)
    _adding: threading.Lock = field(default_factory=threading.Lock)  # main and monitor threads

    def timed(self, part: str | None, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, its own time charged to ``part`` (None: to no part, the SDK's)."""

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            stack: list[list[float]] = self._stacks.__dict__.setdefault("calls", [])
            frame = [time.thread_time(), 0.0]  # start, time of the timed calls inside
            stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                stack.pop()
                elapsed = time.thread_time() - frame[0]
                if part is not None:
                    with self._adding:
                        self.seconds[part] += elapsed - frame[1]
                if stack:
                    stack[-1][1] += elapsed

        return run


def is_repository_code(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is defined in this repository (not in the SDK, a library or the
    interpreter: ``"".join``, ``tuple`` and the SDK's own lambdas are given to ``apply`` too)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    path = Path(code.co_filename)
    return path.is_relative_to(ROOT) and "site-packages" not in path.parts


@contextmanager
def patched(target: Any, attribute: str, replacement: Any) -> Iterator[None]:
    original = getattr(target, attribute)
    setattr(target, attribute, replacement)
    try:
        yield
    finally:
        setattr(target, attribute, original)


@contextmanager
def timing(timers: Timers) -> Iterator[None]:
    """Time this repository's entry points (module docstring) while the block runs."""
    import pulumi
    from pulumi.runtime.mocks import MockMonitor

    import infra.stack
    from infra import plan
    from infra.mocks import PlanMocks

    sdk_apply = timers.timed(None, pulumi.Output.apply)

    def apply(self: Any, func: Callable[[Any], Any], run_with_unknowns: bool = False) -> Any:
        part = "program callbacks" if is_repository_code(func) else None
        return sdk_apply(self, timers.timed(part, func), run_with_unknowns)

    def sdk(function: Any) -> Any:
        return staticmethod(timers.timed(None, function))

    with (
        patched(infra.stack, "build", timers.timed("program declarations", infra.stack.build)),
        patched(pulumi.Resource, "__init__", timers.timed(None, pulumi.Resource.__init__)),
        patched(pulumi.Output, "apply", apply),
        patched(pulumi.Output, "all", sdk(pulumi.Output.all)),
        patched(pulumi.Output, "from_input", sdk(pulumi.Output.from_input)),
        patched(pulumi.runtime, "invoke", timers.timed(None, pulumi.runtime.invoke)),
        patched(pulumi.runtime, "invoke_output", timers.timed(None, pulumi.runtime.invoke_output)),
        patched(PlanMocks, "new_resource", timers.timed("mocks", PlanMocks.new_resource)),
        patched(PlanMocks, "call", timers.timed("mocks", PlanMocks.call)),
        patched(
            plan.RecordingMonitor,
            "RegisterResource",
            timers.timed("recording", plan.RecordingMonitor.RegisterResource),
        ),
        patched(MockMonitor, "RegisterResource", timers.timed(None, MockMonitor.RegisterResource)),
    ):
        yield


def measure(rounds: int) -> dict[str, Any]:
    """Per plan after the first: ``rounds`` pairs of rounds, one untimed then one timed, each
    of every stack x phase; medians of the pairs (a machine that speeds up or slows down
    during the run weighs on both rounds of a pair alike)."""
    from infra.plan import every_plan, run_plans

    requests = every_plan()
    run_plans(requests)  # imports, lazy submodules, first evaluations
    untimed: list[float] = []
    timed: list[float] = []
    parts: list[dict[str, float]] = []
    for _ in range(rounds):
        start = time.perf_counter()
        run_plans(requests)
        untimed.append((time.perf_counter() - start) / len(requests))
        timers = Timers()
        start = time.perf_counter()
        with timing(timers):
            run_plans(requests)
        timed.append((time.perf_counter() - start) / len(requests))
        parts.append({part: s / len(requests) for part, s in timers.seconds.items()})
    repository = [sum(p.values()) for p in parts]
    return {
        "plans_per_round": len(requests),
        "rounds": rounds,
        "seconds_per_plan": round(statistics.median(untimed), 4),
        "seconds_per_plan_timed": round(statistics.median(timed), 4),
        "repository_seconds_per_plan": {
            part: round(statistics.median(p[part] for p in parts), 4) for part in PARTS
        },
        "repository_total_seconds_per_plan": round(statistics.median(repository), 4),
        "floor_seconds_per_plan": round(
            statistics.median(u - r for u, r in zip(untimed, repository, strict=True)), 4
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="pairs of rounds (untimed, timed) of every stack x phase (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return

    from rich.table import Table

    from ops.report import console

    out = console()
    table = Table(
        title=(
            f"{result['rounds']} x {result['plans_per_round']} plans after the first: {result['seconds_per_plan']:.3f} s each "
            f"({result['seconds_per_plan_timed']:.3f} s with the timers)"
        ),
        title_justify="left",
    )
    table.add_column("this repository's code")
    table.add_column("CPU s per plan", justify="right")
    for part, seconds in result["repository_seconds_per_plan"].items():
        table.add_row(part, f"{seconds:.4f}")
    table.add_row("all of it", f"{result['repository_total_seconds_per_plan']:.4f}")
    out.print(table)
    out.print(
        f"floor: a plan after the first takes at least {result['floor_seconds_per_plan']:.3f} s "
        "if this repository's code cost nothing"
    )


if __name__ == "__main__":
    main()
