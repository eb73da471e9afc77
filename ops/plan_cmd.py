"""``jobstream plan``: every resource of a stack and phase, offline (Pulumi's mock engine)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.config import ConfigError
from infra.plan import Plan, PlanDiff, PlanError, diff_plans, group_counts, mermaid, run_plan
from jobstream.contract.phases import PHASES, phase


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="show every resource of a stack and phase, offline (no cloud, no Pulumi CLI)",
        description=(
            "Run the Pulumi program with the stack's Pulumi.<stack>.yaml config under Pulumi's "
            "mock engine and show the resources it declares."
        ),
    )
    parser.add_argument("--stack", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument(
        "--phase", type=int, choices=PHASES, help="evaluate at this phase instead of the stack's"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
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


def _overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or ":" not in key:
            raise PlanError(f"--set {pair!r}: expected NAMESPACE:KEY=VALUE, e.g. jobstream:phase=2")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    try:
        overrides = _overrides(args.set)
        plan = run_plan(args.stack, phase=args.phase, overrides=overrides)
        old = None
        if args.diff_from_phase is not None:
            old = run_plan(args.stack, phase=args.diff_from_phase, overrides=overrides)
    except ConfigError as error:
        err.print(f"[bold red]error:[/] stack {args.stack!r}: {error}", highlight=False)
        return 2
    except PlanError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        return 2

    if args.graph == "mermaid":
        sys.stdout.write(mermaid(plan))
        return 0
    if old is not None:
        diff = diff_plans(old, plan)
        if args.json:
            print(json.dumps({"stack": plan.stack, **diff.to_json()}, indent=2, sort_keys=True))
        else:
            _print_diff(plan, diff)
        return 0
    if args.json:
        print(json.dumps(plan.to_json(), indent=2, sort_keys=True))
    else:
        _print_table(plan)
    return 0


def _print_table(plan: Plan) -> None:
    console = Console()
    current = phase(plan.phase)
    table = Table(
        title=f"jobstream plan: stack {plan.stack}, phase {current.label}", show_lines=True
    )
    table.add_column("component")
    table.add_column("resources", justify="right")
    table.add_column("types")
    total = 0
    for name, _type, counts in group_counts(plan):
        n = sum(counts.values())
        total += n
        table.add_row(name, str(n), "\n".join(f"{c} x {_short_type(t)}" for t, c in counts.items()))
    console.print(table)
    protected = sum(1 for r in plan.resources if r.protect)
    console.print(
        f"{total} resources in {len(plan.components())} components; {protected} protected. "
        f"Publish to: {' + '.join(r.value for r in current.publish_targets)}; consumers: "
        + ", ".join(f"{r.value}={m.value}" for r, m in current.consumer_modes.items()),
        highlight=False,
    )


def _short_type(type_: str) -> str:
    """``aws:ec2/subnet:Subnet`` -> ``aws:ec2:Subnet``."""
    package, module, kind = [*type_.split(":", 2), "", ""][:3]
    return f"{package}:{module.split('/')[0]}:{kind}" if kind else type_


def _short(urn: str) -> str:
    return urn.split("::", 2)[-1]


def _print_diff(plan: Plan, diff: PlanDiff) -> None:
    console = Console()
    console.print(
        f"stack {plan.stack}: phase {diff.from_phase} -> {diff.to_phase}: "
        f"{len(diff.added)} to add, {len(diff.removed)} to remove, {len(diff.changed)} to change, "
        f"{diff.unchanged} unchanged",
        highlight=False,
    )
    for r in sorted(diff.added, key=lambda r: r.urn):
        console.print(f"[green]+ {_short(r.urn)}[/]", highlight=False)
    for r in sorted(diff.removed, key=lambda r: r.urn):
        note = (
            "  [bold red](protected: needs `pulumi state unprotect` first)[/]" if r.protect else ""
        )
        console.print(f"[red]- {_short(r.urn)}[/]{note}", highlight=False)
    for change in diff.changed:
        console.print(f"[yellow]~ {_short(change.urn)}[/]", highlight=False)
        if change.replacement is not None:
            console.print(f"    [bold red]{change.replacement.marker}[/]", highlight=False)
        for key, (old, new) in change.keys.items():
            console.print(f"    {key}: {_brief(old)} -> {_brief(new)}", highlight=False)
    blockers = [c for c in diff.changed if c.replacement is not None]
    if blockers:
        console.print(
            f"[bold red]{len(blockers)} blocker(s): a stateful resource would be replaced; "
            "see docs/database-batch.md before `pulumi up`[/]",
            highlight=False,
        )


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."
