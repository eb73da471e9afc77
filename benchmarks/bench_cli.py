"""Start-up and offline-plan cost of the command line against their floors, measured in one run.

Run on demand (not part of the test suite; ``make bench-cli``):

    .venv/bin/python -m benchmarks.bench_cli [--rounds 5] [--json]

Each figure is the wall time of a fresh process, stdout to /dev/null (not a terminal: no progress
bar is drawn). Each of ``--rounds`` rounds runs every command once, in turn (each round starting
one command further along, so that no command always follows the same one), so that a machine
that speeds up or slows down during the run (seen here: one plan 1.37-1.77 s from one run to
the next) weighs on every figure of a round alike; each ratio is taken within a round, and the
median of the rounds' ratios is kept, with their range:

- process floors: ``python -c pass`` and ``python -c 'import boto3'``;
- the import floor: a process that imports pulumi, pulumi_aws, pulumi_kafka and every
  pulumi_aws submodule the program loads when it plans every stack and phase (found first, by
  a process that does; pulumi_aws loads its submodules lazily, on first use);
- ``jobstream --help``;
- one plan: ``jobstream plan --stack prod --phase 3 --json``;
- ``jobstream plan --all --json`` (10 plans) and ``jobstream cost --stack prod --json`` (5);
- and, inside one process, the evaluation of each plan after the first (``run_plans``).

The targets (issue 14), on a quiet machine: --help within 0.4 s of the process floor; one plan
<= 1.4 x the import floor; plan --all <= 2.5 x one plan; cost <= 1.5 x one plan. Other work on
the machine inflates every figure: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ops.arguments import positive_int

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
JOBSTREAM = [PYTHON, "-m", "ops.cli"]

_LOADED_SUBMODULES = """
import sys, types
from infra.plan import every_plan, run_plans
run_plans(every_plan())
print(" ".join(sorted(
    name.split(".")[1] for name, module in sys.modules.items()
    if name.startswith("pulumi_aws.") and name.count(".") == 1
    and type(module) is types.ModuleType and not name.split(".")[1].startswith("_")
)))
"""

_IMPORT_FLOOR = """
import importlib, pulumi, pulumi_aws, pulumi_kafka
for name in {names!r}:
    getattr(importlib.import_module("pulumi_aws." + name), "__all__", None)  # loads it
"""

_EVALUATION = """
import json, time
from infra.plan import every_plan, run_plans
stamps = [time.perf_counter()]
run_plans(every_plan(), finished=lambda _r, _p: stamps.append(time.perf_counter()))
steps = [b - a for a, b in zip(stamps, stamps[1:])]
print(json.dumps({"first": steps[0], "after": steps[1:]}))
"""


def wall(argv: list[str]) -> float:
    """Wall time (s) of one run of ``argv``, stdout discarded."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def interleaved(commands: dict[str, list[str]], rounds: int) -> dict[str, list[float]]:
    """The wall times of every command, one run of each per round, round after round; each round
    starts one command further along the list than the one before."""
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(wall(commands[name]))
    return times


def measure(rounds: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    submodules = subprocess.run(
        [PYTHON, "-c", _LOADED_SUBMODULES], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    runs = interleaved(
        {
            "python -c pass": [PYTHON, "-c", "pass"],
            "python -c 'import boto3'": [PYTHON, "-c", "import boto3"],
            "import floor": [PYTHON, "-c", _IMPORT_FLOOR.format(names=submodules)],
            "jobstream --help": [*JOBSTREAM, "--help"],
            "one plan": [*JOBSTREAM, "plan", "--stack", "prod", "--phase", "3", "--json"],
            "plan --all (10 plans)": [*JOBSTREAM, "plan", "--all", "--json"],
            "cost (5 plans)": [*JOBSTREAM, "cost", "--stack", "prod", "--json"],
        },
        rounds,
    )
    evaluation = json.loads(
        subprocess.run(
            [PYTHON, "-c", _EVALUATION], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    checks = [
        ("--help - process floor", "jobstream --help", "-", "python -c pass", "s", 0.4),
        ("--help - boto3 floor", "jobstream --help", "-", "python -c 'import boto3'", "s", 0.4),
        ("one plan / import floor", "one plan", "/", "import floor", "x", 1.4),
        ("plan --all / one plan", "plan --all (10 plans)", "/", "one plan", "x", 2.5),
        ("cost / one plan", "cost (5 plans)", "/", "one plan", "x", 1.5),
    ]
    ratios: list[dict[str, Any]] = []
    for what, measured, operator, floor, unit, target in checks:
        per_round = [
            a - b if operator == "-" else a / b
            for a, b in zip(runs[measured], runs[floor], strict=True)
        ]
        value = statistics.median(per_round)
        ratios.append(
            {
                "what": what,
                "value": round(value, 3),
                "range": [round(min(per_round), 3), round(max(per_round), 3)],
                "unit": unit,
                "target": target,
                "met": value <= target,
            }
        )
    return {
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "pulumi_aws_submodules": submodules,
        "wall_s": {k: round(statistics.median(v), 3) for k, v in runs.items()},
        "wall_s_per_round": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        "in_process_s": {
            "first plan (imports included)": round(evaluation["first"], 3),
            "each plan after the first (median)": round(statistics.median(evaluation["after"]), 3),
        },
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        help="rounds, each running every command once (default 5)",
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
    out.print(
        f"{result['cpus']} CPUs; load average before {result['load_average_before']}, after "
        f"{result['load_average_after']}; median of {result['rounds']} interleaved rounds; "
        "import floor: "
        f"pulumi, pulumi_aws, pulumi_kafka + pulumi_aws.{{{','.join(result['pulumi_aws_submodules'])}}}"
    )
    times = Table(title="wall time, fresh process", title_justify="left")
    times.add_column("what")
    times.add_column("seconds", justify="right")
    for what, seconds in [*result["wall_s"].items(), *result["in_process_s"].items()]:
        times.add_row(what, f"{seconds:.3f}")
    out.print(times)
    ratios = Table(title="against the targets", title_justify="left")
    for column in ("what", "value", "rounds' range", "target", "met"):
        ratios.add_column(column, justify="left" if column == "what" else "right")
    for r in result["ratios"]:
        unit = r["unit"]
        ratios.add_row(
            r["what"],
            f"{r['value']:.2f} {unit}",
            f"{r['range'][0]:.2f} to {r['range'][1]:.2f} {unit}",
            f"<= {r['target']} {unit}",
            "yes" if r["met"] else "no",
        )
    out.print(ratios)


if __name__ == "__main__":
    main()
