"""README.md's generated sections match the code."""

from __future__ import annotations

import re

from infra.config import KEYS
from infra.docs import README, phase_table, render
from infra.plan import PlanSet


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "README.md is stale: run `make docs` (python -m infra.docs)"


def test_readme_lists_every_config_key() -> None:
    text = README.read_text()
    missing = [k.name for k in KEYS if f"`jobstream:{k.name}`" not in text]
    assert missing == []


def test_phase_table_shows_cutover_states() -> None:
    table = phase_table()
    assert (
        "| SQS -> Batch trigger (EventBridge Pipe) | running | running | running | running | - |"
        in table
    )
    assert "| ML consumer on Kafka (ECS Fargate) | - | - | verify | primary | primary |" in table


def test_readme_counts_the_dev_plan_at_phase_3_as_the_plan_does(plans: PlanSet) -> None:
    plan = plans.get("dev", 3)
    stated = re.search(r"dev at phase 3: (\d+) resources in (\d+) components", README.read_text())
    assert stated, "README.md no longer states the dev phase-3 counts this test checks"
    actual = (len(plan.custom_resources()), len(plan.components()))
    assert (int(stated[1]), int(stated[2])) == actual, f"README.md says {stated[0]!r}: {actual}"
