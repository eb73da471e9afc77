"""``jobstream rehearse``: the whole migration, locally, the way AWS runs it.

The stack's own resources (from its offline plan, ``--set`` overrides included) on moto's server,
the Tansu broker and a TLS-only PostgreSQL; producers as processes; a stand-in for the pipe and
AWS Batch that runs each job as its own ``jobstream-worker`` process with the job definition's
environment and retry rules; the consumer service as ``jobstream-worker`` processes in service
mode; faults against those processes; every phase change only after its preflight gates pass
(``jobstream preflight``'s code against the local servers), with the operator's own commands
(``parked``, ``redrive``, ``replay``) between the steps. The engine is ``rehearsal.engine``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ops.arguments import positive_int, positive_number
from ops.errors import EXIT_CHECK_FAILED, UsageError, report_error

EXIT_LOST = EXIT_CHECK_FAILED


def register(subparsers: Any) -> None:
    from rehearsal.config import DEFAULT_STEPS, RehearsalConfig

    d = RehearsalConfig()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rehearse",
        help="run the whole migration locally on the stack's own resources, with real faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stack", default=d.stack, help="stack whose plan is rehearsed (default dev)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value of the plan, e.g. jobstream:maxReceiveCount=2",
    )
    parser.add_argument(
        "--steps",
        default=",".join(map(str, DEFAULT_STEPS)),
        help="the phases visited, in order (default %(default)s)",
    )
    parser.add_argument(
        "--step-seconds",
        type=positive_number,
        default=d.step_seconds,
        help="time in each step (default %(default)s)",
    )
    parser.add_argument(
        "--sqs-rate",
        type=positive_number,
        default=d.sqs_rate,
        help="jobs per second while SQS is primary: each one Batch job process (default %(default)s)",
    )
    parser.add_argument(
        "--kafka-rate",
        type=positive_number,
        default=d.kafka_rate,
        help="jobs per second while Kafka is primary (default %(default)s)",
    )
    parser.add_argument(
        "--producers", type=positive_int, default=d.producers, help="producer processes"
    )
    parser.add_argument(
        "--consumers",
        type=positive_int,
        help="consumer service tasks (default: the plan's, at least 2)",
    )
    parser.add_argument("--no-faults", action="store_true", help="inject no fault")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed of the faults")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the logs, journals and repair logs"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> Any:
    from ops.plan_cmd import config_overrides
    from rehearsal.config import RehearsalConfig

    overrides = config_overrides(
        args.set,
        phase_refusal="the phases are chosen with --steps; a --set phase would make every "
        "step's plan that one phase",
    )
    try:
        steps = tuple(int(s) for s in args.steps.split(","))
    except ValueError:
        raise ValueError(f"--steps {args.steps!r}: expected phase numbers like 1,2,3") from None
    return RehearsalConfig(
        stack=args.stack,
        overrides=overrides,
        steps=steps,
        step_seconds=args.step_seconds,
        sqs_rate=args.sqs_rate,
        kafka_rate=args.kafka_rate,
        producers=args.producers,
        consumers=args.consumers,
        faults=not args.no_faults,
        seed=args.seed,
        keep_workdir=args.keep_workdir,
    )


def run(args: argparse.Namespace) -> int:
    from infra.config import ConfigError, PlanError
    from rehearsal.engine import Rehearsal
    from rehearsal.stack_model import StackModelError

    try:
        config = _config(args)
        with _live(enabled=not args.json and sys.stderr.isatty()) as progress:
            report = Rehearsal(config, progress).run()
    except UsageError as error:
        return report_error(args, error)
    except (ValueError, ConfigError, PlanError, StackModelError) as error:
        return report_error(args, UsageError(str(error)))  # the one error shape of every command
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        _print(report)
    return 0 if report["ok"] else EXIT_LOST


@contextlib.contextmanager
def _live(*, enabled: bool) -> Iterator[Callable[[Mapping[str, Any]], None]]:
    """A live line on a terminal (phase, jobs, faults so far); one line per step otherwise."""
    from rich.live import Live
    from rich.text import Text

    from ops.report import console as make_console

    console = make_console(stderr=True)  # off a terminal: one whole line per step, never wrapped
    began = time.monotonic()
    last: list[tuple[int, str]] = [(0, "")]

    def line(state: Mapping[str, Any]) -> Text:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(state.get("faults", {}).items())) or "none"
        head = state.get("status") or (
            f"step {state.get('step')}/{state.get('steps')}: phase {state.get('phase')}"
        )
        return Text(
            f"[{time.monotonic() - began:5.0f} s] {head} | published "
            f"{state.get('published', 0):,}, applied {state.get('applied', 0):,}, parked "
            f"{state.get('parked', 0)} | faults: {faults}"
        )

    if not enabled:

        def plain(state: Mapping[str, Any]) -> None:
            # One line when a step starts and when the operator starts waiting or draining
            # (not one per poll): the log shows where the time goes.
            status = str(state.get("status") or "").split(":")[0]
            key = (int(state.get("step") or 0), status)
            if key != last[0]:
                last[0] = key
                console.print(line(state))

        yield plain
        return
    with Live(Text("starting"), console=console, refresh_per_second=4, transient=True) as live:
        yield lambda state: live.update(line(state))


def _print(report: Mapping[str, Any]) -> None:
    from rich.table import Table

    from ops.report import console

    out = console()
    s = report["summary"]
    steps = Table(
        title=f"rehearsal of stack {report['stack']}: {report['seconds']} s", title_justify="left"
    )
    for column in ("step", "phase", "seconds", "gate wait s", "gates"):
        steps.add_column(column)
    for step in report["steps"]:
        gates = step["gates"]
        passed = sum(1 for g in gates if g["verdict"] == "pass")
        unmodelled = sum(1 for g in gates if not g["blocking"])
        forced = sum(1 for g in gates if g.get("forced"))
        figure = f"{passed} pass" + (f", {unmodelled} not modelled" if unmodelled else "")
        figure += f", [bold red]{forced} never passed[/]" if forced else ""
        steps.add_row(
            str(step["step"]), str(step["phase"]), f"{step['seconds']:.1f}",
            f"{step['gate_wait_seconds']:.1f}", figure if gates else "-",
        )  # fmt: skip
    out.print(steps)
    summary = Table(show_header=False, title="accounting", title_justify="left")
    summary.add_column("what", style="bold")
    summary.add_column("value")
    latency = ", ".join(
        f"{route} p50 {v['p50']:.0f} ms / p99 {v['p99']:.0f} ms ({v['jobs']} jobs)"
        for route, v in s["latency_ms"].items()
    )
    parked = ", ".join(f"{k} {v}" for k, v in s["parked"].items())
    for key, value in (
        ("published", f"{s['published']:,}"),
        ("applied", f"{s['applied']:,}"),
        ("lost", str(s["lost"])),
        ("applied twice", str(s["applied_twice"])),
        ("parked (then redriven or archived)", f"{parked}; as expected: {s['parked_as_expected']}"),
        ("parked reasons", "; ".join(f"{k}: {v}" for k, v in s["parked_reasons"].items()) or "-"),
        ("duplicates suppressed", f"{s['duplicates_suppressed']:.0f}"),
        (
            "verify parity",
            "-"
            if s["verify_parity"] is None
            else f"{s['verify_parity'] * 100:.2f} % "
            f"({s['verify_matches']:.0f} matches, {s['verify_mismatches']:.0f} mismatches, "
            f"{s['verify_deferred']:.0f} deferred)",
        ),
        ("stale routing reports", f"{s['routing_stale_reports']:.0f}"),
        ("repair-log copies replayed", str(s["repair_log_replayed"])),
        ("latency publish -> applied", latency or "-"),
        (
            "wall time",
            ", ".join(f"{k} {v:.0f} s" for k, v in report.get("timings_seconds", {}).items())
            or "-",
        ),
        ("Batch", ", ".join(f"{k} {v}" for k, v in s["batch"].items())),
        ("consumer service", ", ".join(f"{k} {v}" for k, v in s["consumer_service"].items())),
        (
            "faults injected",
            ", ".join(f"{k} {v}" for k, v in sorted(report["faults"].items())) or "none",
        ),
    ):
        summary.add_row(key, value)
    out.print(summary)
    verdict = "[green]OK[/]" if report["ok"] else "[bold red]NOT OK[/]"
    out.print(f"{verdict}: lost {s['lost']}, applied twice {s['applied_twice']}")
    for key in ("lost_jobs", "applied_twice_jobs", "parked_unexpected", "parked_missing"):
        if report[key]:
            out.print(f"{key}: {', '.join(report[key])}")
