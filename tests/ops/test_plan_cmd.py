"""``jobstream plan`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def test_diff_marks_a_stateful_replacement_as_a_blocker(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 defect 3: the readable diff and --json flag a replacing change."""
    from infra import plan as plan_module
    from ops import plan_cmd

    real = plan_module.run_plan

    def run_plan(stack: str, *, phase: int | None = None, overrides: Any = None) -> Any:
        # The "old" phase is planned with another compute type: the compute environment's
        # allocation strategy changes, which replaces it.
        extra = {"jobstream:computeType": "SPOT"} if phase == 2 else {}
        return real(stack, phase=phase, overrides={**(overrides or {}), **extra})

    monkeypatch.setattr(plan_cmd, "run_plan", run_plan)
    code, out, _ = run(capsys, "plan", "--stack", "dev", "--phase", "3", "--diff-from-phase", "2")
    assert code == 0
    assert "!! REPLACES aws:batch/computeEnvironment:ComputeEnvironment: blocker" in out
    assert "blocker(s)" in out
    code, out, _ = run(
        capsys, "plan", "--stack", "dev", "--phase", "3", "--diff-from-phase", "2", "--json"
    )
    changed = {c["type"]: c for c in json.loads(out)["changed"]}
    replaced = changed["aws:batch/computeEnvironment:ComputeEnvironment"]["replacement"]
    assert replaced["blocker"] is True and replaced["inputs"]


def test_a_yaml_error_in_the_stack_file_exits_2_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: jobstream\nruntime: python\n")
    (tmp_path / "Pulumi.qa.yaml").write_text("config:\n  jobstream:phase: 3\n   bad: [\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "plan", "--stack", "qa")
    assert code == 2
    assert "Pulumi.qa.yaml: line 3" in err and "Traceback" not in err


def test_a_misspelled_namespace_exits_2_naming_file_key_and_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "plan", "--stack", "dev", "--set", "jobsteam:natStrategy=per-az")
    assert code == 2
    assert "Pulumi.dev.yaml" in err
    assert "jobsteam:natStrategy = 'per-az'" in err and "jobstream, aws, pulumi" in err
