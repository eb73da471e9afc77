"""``jobstream plan``: every resource of a stack and phase, offline (Pulumi's mock engine).

``--all`` evaluates every stack at every phase in this one process: the program and the
pulumi_aws modules are imported once, so each plan after the first costs its evaluation only.
``cost`` plans through the same ``evaluate``.

Counts: a plan's resources are what a deployment creates (the cloud resources and the AWS
provider); components are logical groups, counted apart. The table, the diff and the diagram
count the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from infra.config import NAMESPACE, ConfigError
from jobstream.contract.phases import CLEANUP_PHASE, PHASES, phase
from ops.errors import EXIT_OK, UsageError, handles_errors
from ops.report import console

if TYPE_CHECKING:
    from infra.plan import Plan, PlanRequest
    from infra.plan_diff import PlanDiff


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="show every resource of a stack and phase, offline (no cloud, no Pulumi CLI)",
        description=(
            "Run the Pulumi program with the stack's Pulumi.<stack>.yaml config under Pulumi's "
            "mock engine and show the resources it declares."
        ),
    )
    parser.add_argument(
        "--stack", help="stack name (reads Pulumi.<stack>.yaml); with --all, only this stack"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help=(
            "every stack (each Pulumi.<stack>.yaml) at every phase, in one process: a summary "
            "table, or a JSON array of plans with --json; phase 5 with "
            "jobstream:confirmCleanup=true"
        ),
    )
    parser.add_argument(
        "--phase",
        type=int,
        choices=PHASES,
        help="evaluate at this phase instead of the stack's (with --all: only this phase)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (or array)")
    parser.add_argument(
        "--diff-from-phase",
        type=int,
        choices=PHASES,
        metavar="M",
        help="show what moving the stack from phase M to its (or --phase) phase adds, removes and changes",
    )
    parser.add_argument(
        "--graph", choices=["mermaid"], help="print a diagram of the components instead"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set jobstream:confirmCleanup=true (repeatable)",
    )
    parser.set_defaults(handler=run)


PHASE_KEY = f"{NAMESPACE}:phase"
"""Never taken from ``--set``: the command's own options choose the phase (``plan``'s
``--phase`` and ``--diff-from-phase``, ``rehearse``'s ``--steps``), and a ``--set`` of it would
replace them all."""


def config_overrides(pairs: Sequence[str], *, phase_refusal: str) -> dict[str, str]:
    """The ``--set KEY=VALUE`` options as config overrides; ``PHASE_KEY`` is refused with
    ``phase_refusal`` (what chooses the phase instead)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or ":" not in key:
            raise UsageError(
                f"--set {pair!r}: expected NAMESPACE:KEY=VALUE, e.g. jobstream:confirmCleanup=true"
            )
        if key == PHASE_KEY:
            raise UsageError(f"--set {pair!r}: {phase_refusal}")
        out[key] = value
    return out


def evaluate(requests: Sequence[PlanRequest]) -> list[Plan]:
    """Evaluate the plans in this process, in order; with a progress bar on stderr when there
    is more than one and stderr is a terminal (nothing is drawn on a pipe). A stack config
    error names the stack (and phase) it came from."""
    from infra.plan import run_plans

    current: list[PlanRequest] = []

    def started(request: PlanRequest) -> None:
        current[:] = [request]

    err = console(stderr=True)
    try:
        if len(requests) < 2 or not err.is_terminal:
            return run_plans(requests, started=started)
        return _with_progress(requests, started)
    except ConfigError as error:
        where = f"stack {current[0].stack!r}"
        if current[0].phase is not None:
            where += f" at phase {current[0].phase}"
        hint = (
            f"an offline plan of phase {CLEANUP_PHASE} can confirm it on the command line: "
            f"--set {NAMESPACE}:confirmCleanup=true"
            if current[0].phase == CLEANUP_PHASE and "confirmCleanup" in str(error)
            else None
        )
        raise UsageError(f"{where}: {error}", hint=hint) from None


def _with_progress(
    requests: Sequence[PlanRequest], started: Callable[[PlanRequest], None]
) -> list[Plan]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from infra.plan import run_plans

    with Progress(
        TextColumn("planning {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(requests))

        def start(request: PlanRequest) -> None:
            started(request)
            progress.update(task, description=request.label)

        return run_plans(
            requests, started=start, finished=lambda _request, _plan: progress.advance(task)
        )


@handles_errors
def run(args: argparse.Namespace) -> int:
    from infra.plan import PlanRequest, every_plan
    from infra.plan_diff import diff_plans
    from infra.plan_views import mermaid

    overrides = config_overrides(
        args.set,
        phase_refusal="the phase is chosen with --phase N (and --diff-from-phase M), not --set: "
        "a --set phase would replace both",
    )
    if args.all:
        if args.diff_from_phase is not None or args.graph:
            raise UsageError("--all prints every plan; --diff-from-phase and --graph take one")
        requests = [
            PlanRequest(r.stack, r.phase, {**r.overrides, **overrides})
            for r in every_plan(
                [args.stack] if args.stack else None,
                [args.phase] if args.phase is not None else PHASES,
            )
        ]
        plans = evaluate(requests)
        if args.json:
            print(json.dumps([p.to_json() for p in plans], indent=2, sort_keys=True))
        else:
            _print_summary(plans, cleanup_assumed=any(r.phase == CLEANUP_PHASE for r in requests))
        return EXIT_OK
    if not args.stack:
        raise UsageError("--stack is required (or --all for every stack)")

    if args.graph and (args.json or args.diff_from_phase is not None):
        raise UsageError(
            "--graph prints a diagram of one plan: not with --json or --diff-from-phase"
        )
    requests = [PlanRequest(args.stack, args.phase, overrides)]
    if args.diff_from_phase is not None:
        requests.append(PlanRequest(args.stack, args.diff_from_phase, overrides))
    plan, *before = evaluate(requests)

    if args.graph == "mermaid":
        sys.stdout.write(mermaid(plan))
        return EXIT_OK
    if before:
        diff = diff_plans(before[0], plan)
        if args.json:
            print(json.dumps({"stack": plan.stack, **diff.to_json()}, indent=2, sort_keys=True))
        else:
            _print_diff(plan, diff)
        return EXIT_OK
    if args.json:
        print(json.dumps(plan.to_json(), indent=2, sort_keys=True))
    else:
        _print_table(plan)
    return EXIT_OK


def _resources(n: int) -> str:
    return f"{n} resource" if n == 1 else f"{n} resources"


def _print_table(plan: Plan) -> None:
    from rich.table import Table

    from infra.plan_views import group_counts

    out = console()
    current = phase(plan.phase)
    table = Table(
        title=f"jobstream plan: stack {plan.stack}, phase {current.label}", show_lines=True
    )
    table.add_column("component")
    table.add_column("resources", justify="right")
    table.add_column("types")
    for name, _type, counts in group_counts(plan):
        table.add_row(
            escape(name),
            str(sum(counts.values())),
            "\n".join(f"{c} x {_short_type(t)}" for t, c in counts.items()),
        )
    out.print(table)
    imported = [r for r in plan.resources if r.import_id]
    if imported:
        adopted = Table(title="imported (adopted), not created", show_lines=False)
        adopted.add_column("resource")
        adopted.add_column("type")
        adopted.add_column("import id")
        adopted.add_column("protected")
        for r in imported:
            adopted.add_row(
                escape(r.name),
                _short_type(r.type),
                escape(r.import_id or ""),
                "yes" if r.protect else "no",
            )
        out.print(adopted)
    protected = sum(1 for r in plan.resources if r.protect)
    out.print(
        f"{_resources(len(plan.custom_resources()))} in {len(plan.components())} components "
        f"(the AWS provider included, the components not counted); {protected} protected; "
        f"{len(imported)} imported. "
        f"Publish to: {' + '.join(r.value for r in current.publish_targets)}; consumers: "
        + ", ".join(f"{r.value}={m.value}" for r, m in current.consumer_modes.items()),
        markup=False,
    )


def _print_summary(plans: Sequence[Plan], *, cleanup_assumed: bool) -> None:
    from rich.table import Table

    out = console()
    table = Table(title="jobstream plan: every stack and phase", title_justify="left")
    for column in ("stack", "phase", "resources", "components", "protected", "publish to"):
        table.add_column(
            column,
            justify="right" if column in ("resources", "components", "protected") else "left",
        )
    table.add_column("consumers")
    for plan in plans:
        current = phase(plan.phase)
        table.add_row(
            escape(plan.stack),
            current.label,
            str(len(plan.custom_resources())),
            str(len(plan.components())),
            str(sum(1 for r in plan.resources if r.protect)),
            " + ".join(r.value for r in current.publish_targets),
            ", ".join(f"{r.value}={m.value}" for r, m in current.consumer_modes.items()),
        )
    out.print(table)
    note = (
        "resources: what a deployment creates (the AWS provider included, components not counted)"
    )
    if cleanup_assumed:
        note += "; phase 5 evaluated with jobstream:confirmCleanup=true"
    out.print(note, markup=False)


def _short_type(type_: str) -> str:
    """``aws:ec2/subnet:Subnet`` -> ``aws:ec2:Subnet``."""
    package, module, kind = [*type_.split(":", 2), "", ""][:3]
    return f"{package}:{module.split('/')[0]}:{kind}" if kind else type_


def _print_diff(plan: Plan, diff: PlanDiff) -> None:
    from infra.plan_diff import is_structured

    out = console()
    counts = diff.counts()
    res, comps = counts["resources"], counts["components"]
    after = len(plan.custom_resources())
    component_note = ", ".join(
        f"{n} {what}"
        for what, n in (("to add", comps["added"]), ("to remove", comps["removed"]))
        if n
    )
    out.print(
        f"stack {plan.stack}: phase {diff.from_phase} -> {diff.to_phase}: "
        f"{_resources(res['added'])} to add, {res['removed']} to remove, "
        f"{res['changed']} to change, {res['unchanged']} unchanged; "
        f"{_resources(after)} at phase {diff.to_phase} (the AWS provider included, components "
        f"not counted" + (f"; components: {component_note}" if component_note else "") + ")",
        markup=False,
    )
    for r in sorted(diff.added, key=lambda r: r.urn):
        kind = "" if r.custom else "  (component)"
        out.print(f"[green]+ {escape(r.urn)}[/]{kind}")
    for r in sorted(diff.removed, key=lambda r: r.urn):
        kind = "" if r.custom else "  (component)"
        note = (
            "  [bold red](protected: needs `pulumi state unprotect` first)[/]" if r.protect else ""
        )
        out.print(f"[red]- {escape(r.urn)}[/]{kind}{note}")
    for change in diff.changed:
        out.print(f"[yellow]~ {escape(change.urn)}[/]")
        if change.replacement is not None:
            out.print(f"    [bold red]{escape(change.replacement.marker)}[/]")
        for key, (old, new) in change.keys.items():
            if not (is_structured(old) and is_structured(new)):
                out.print(f"    {key}: {_show(old)} -> {_show(new)}", markup=False)
                continue
            out.print(f"    {key}{' (JSON)' if isinstance(old, str) else ''}:", markup=False)
            for inner in change.value_changes(key):
                old_text = "(absent)" if inner.added else _show(inner.old)
                new_text = "(absent)" if inner.removed else _show(inner.new)
                out.print(f"      {inner.path or '(all)'}: {old_text} -> {new_text}", markup=False)
    blockers = [c for c in diff.changed if c.replacement is not None]
    if blockers:
        out.print(
            f"[bold red]{len(blockers)} blocker(s): a stateful resource would be replaced; "
            "see docs/database-batch.md before `pulumi up`[/]"
        )


def _show(value: Any) -> str:
    """A value as JSON (strings quoted), whole."""
    return json.dumps(value, sort_keys=True)
