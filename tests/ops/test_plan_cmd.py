"""``jobstream plan`` as a user runs it."""

from __future__ import annotations

import json

import pytest

from ops.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_prints_exactly_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--stack", "prod", "--phase", "1", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["stack"] == "prod" and document["phase"] == 1 and document["resources"]


def test_table_groups_resources_by_component(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--stack", "dev", "--phase", "1")
    assert code == 0
    assert "network" in out and "jobs" in out and "resources in" in out


def test_bad_config_value_names_the_key_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--stack", "dev", "--set", "jobstream:natStrategy=perAz")
    assert code == 2
    assert "jobstream:natStrategy" in err and "per-az" in err


def test_phase_5_without_confirmation_fails_with_the_key_to_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "plan", "--stack", "dev", "--phase", "5")
    assert code == 2
    assert "jobstream:confirmCleanup" in err


def test_unknown_stack_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--stack", "staging")
    assert code == 2 and "Pulumi.staging.yaml does not exist" in err


def test_malformed_set_option_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--stack", "dev", "--set", "natStrategy")
    assert code == 2 and "NAMESPACE:KEY=VALUE" in err


def test_diff_json_lists_changed_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "plan", "--stack", "dev", "--phase", "1", "--diff-from-phase", "1", "--json"
    )
    assert code == 0
    document = json.loads(out)
    assert document["fromPhase"] == 1 and document["toPhase"] == 1 and document["changed"] == []


def test_graph_prints_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--stack", "dev", "--graph", "mermaid")
    assert code == 0 and out.startswith("flowchart LR")
