"""Sections of README.md generated from the code: the config-key table and the phase table.

``python -m infra.docs`` rewrites them in place (``make docs``); a test fails when README.md is
stale, so the documentation cannot drift from ``infra/config/`` and ``jobstream.contract.phases``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from infra.config import markdown_table
from jobstream.contract.phases import ConsumerMode, GroupState, ResourceGroup, Route, all_phases

README = Path(__file__).resolve().parent.parent / "README.md"

_GROUP_LABELS: dict[ResourceGroup, str] = {
    ResourceGroup.NETWORK: "VPC, subnets, NAT, endpoints",
    ResourceGroup.DATABASE: "RDS PostgreSQL + RDS Proxy",
    ResourceGroup.JOB_QUEUE: "SQS job queue + DLQ",
    ResourceGroup.SQS_TRIGGER: "SQS -> Batch trigger (EventBridge Pipe)",
    ResourceGroup.BATCH: "Batch compute env, job queue, job definition",
    ResourceGroup.KAFKA: "MSK cluster + topics",
    ResourceGroup.CONSUMER_SERVICE: "ML consumer on Kafka (ECS Fargate)",
    ResourceGroup.ROUTING: "Routing parameter (SSM)",
    ResourceGroup.MONITORING: "Alerts, alarms, dashboard",
}


def phase_table() -> str:
    phases = all_phases()
    header = "| | " + " | ".join(f"{p.number} {p.title}" for p in phases) + " |"
    lines = [header, "|---" * (len(phases) + 1) + "|"]
    for group in ResourceGroup:
        cells = []
        for p in phases:
            state = p.state(group)
            cells.append(
                "-" if state is None else ("yes" if state is GroupState.PRESENT else state.value)
            )
        lines.append(f"| {_GROUP_LABELS[group]} | " + " | ".join(cells) + " |")
    lines.append(
        "| producers publish to | "
        + " | ".join(" + ".join(r.value for r in p.publish_targets) for p in phases)
        + " |"
    )
    for route in Route:
        lines.append(
            f"| {route.value} consumer mode | "
            + " | ".join(_mode(p.consumer_modes[route]) for p in phases)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _mode(mode: ConsumerMode) -> str:
    return "-" if mode is ConsumerMode.OFF else mode.value


SECTIONS = {"config-keys": markdown_table, "phase-table": phase_table}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- {name}:start[^>]*-->\n)(.*?)(<!-- {name}:end -->)", flags=re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(
                f"README.md lacks the <!-- {name}:start --> ... <!-- {name}:end --> markers"
            )
        text = pattern.sub(
            lambda m, make=make: m.group(1) + "\n" + make() + "\n" + m.group(3), text
        )
    return text


def main() -> int:
    current = README.read_text()
    updated = render(current)
    if updated != current:
        README.write_text(updated)
        print(f"updated {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
