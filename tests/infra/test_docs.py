"""README.md's generated sections match the code."""

from __future__ import annotations

from infra.config import KEYS
from infra.docs import README, phase_table, render


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
