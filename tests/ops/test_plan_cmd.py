"""``jobstream plan`` as a user runs it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops.cli import main

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_table_lists_imported_resources_with_their_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "https://sqs.us-east-1.amazonaws.com/210987654321/legacy-jobs"
    code, out, _ = run(
        capsys,
        "plan",
        "--stack",
        "dev",
        "--phase",
        "1",
        "--set",
        f"jobstream:adoptJobQueueUrl={url}",
    )
    assert code == 0
    assert "imported (adopted), not created" in out and url in out
    assert "1 imported" in out


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


def test_phase_5_without_confirmation_hints_at_the_set_that_confirms_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "plan", "--stack", "dev", "--phase", "5", "--json")
    assert code == 2
    assert "--set jobstream:confirmCleanup=true" in (json.loads(out)["error"]["hint"] or "")


def test_unknown_stack_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--stack", "staging")
    assert code == 2 and "Pulumi.staging.yaml does not exist" in err


@pytest.mark.parametrize("name", ["../main/Pulumi", "..", "dev/x"])
def test_a_stack_name_that_is_a_path_is_refused_before_any_file_is_read(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, _, err = run(capsys, "plan", "--stack", name)
    assert code == 2 and f"stack name {name!r}" in err and "stacks: dev, prod" in err, err


def test_malformed_set_option_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--stack", "dev", "--set", "natStrategy")
    assert code == 2 and "NAMESPACE:KEY=VALUE" in err


def test_the_phase_cannot_be_set_with_set_since_it_would_replace_phase_and_the_diffs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "plan", "--stack", "dev", "--phase", "2", "--diff-from-phase", "1",
        "--set", "jobstream:phase=4", "--json",
    )  # fmt: skip
    assert code == 2, "a --set phase made the diff compare phase 4 with itself"
    assert "--phase N" in json.loads(out)["error"]["message"]


def test_all_refuses_a_set_phase_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--all", "--stack", "dev", "--set", "jobstream:phase=2")
    assert code == 2 and "--phase N" in err, "five phase-2 plans printed as five phases"


@pytest.mark.parametrize("extra", [("--json",), ("--diff-from-phase", "2")])
def test_graph_takes_neither_json_nor_a_diff(
    capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    code, out, err = run(capsys, "plan", "--stack", "dev", "--graph", "mermaid", *extra)
    assert code == 2 and "--graph prints a diagram of one plan" in err
    assert not out.startswith("flowchart"), "the diagram was printed despite " + " ".join(extra)


def test_diff_json_lists_changed_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "plan", "--stack", "dev", "--phase", "1", "--diff-from-phase", "1", "--json"
    )
    assert code == 0
    document = json.loads(out)
    assert document["fromPhase"] == 1 and document["toPhase"] == 1 and document["changed"] == []


def test_diff_json_entries_say_which_the_resource_counts_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "plan", "--stack", "dev", "--phase", "3", "--diff-from-phase", "2", "--json"
    )
    assert code == 0
    document = json.loads(out)
    counts = document["counts"]
    for kind in ("added", "removed", "changed"):
        entries = document[kind]
        assert sum(e["custom"] for e in entries) == counts["resources"][kind], kind
        assert sum(not e["custom"] for e in entries) == counts["components"][kind], kind
    both = counts["resources"]["unchanged"] + counts["components"]["unchanged"]
    assert document["unchanged"] == both


def test_plan_json_marks_components_so_its_count_matches_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "plan", "--stack", "dev", "--phase", "3", "--json")
    assert code == 0
    resources = json.loads(out)["resources"]
    code, table, _ = run(capsys, "plan", "--stack", "dev", "--phase", "3")
    counted = sum(r["custom"] for r in resources)
    assert f"{counted} resources in {len(resources) - counted} components" in table


def test_graph_prints_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--stack", "dev", "--graph", "mermaid")
    assert code == 0 and out.startswith("flowchart LR")


def test_diff_marks_a_stateful_replacement_as_a_blocker(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 defect 3: the readable diff and --json flag a replacing change."""
    from infra import plan as plan_module

    real = plan_module.run_plan

    def run_plan(stack: str, *, phase: int | None = None, overrides: Any = None) -> Any:
        # The "old" phase is planned with another compute type: the compute environment's
        # allocation strategy changes, which replaces it.
        extra = {"jobstream:computeType": "SPOT"} if phase == 2 else {}
        return real(stack, phase=phase, overrides={**(overrides or {}), **extra})

    monkeypatch.setattr(plan_module, "run_plan", run_plan)  # what run_plans calls
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


def test_errors_with_json_are_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--stack", "staging", "--json")
    assert code == 2
    document = json.loads(out)
    assert document["exit_code"] == 2 and document["error"]["kind"] == "usage"
    assert "Pulumi.staging.yaml does not exist" in document["error"]["message"]
    assert "Pulumi.staging.yaml does not exist" in err


def test_a_stack_is_needed_without_all(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan")
    assert code == 2 and "--stack is required (or --all" in err


def test_all_takes_no_diff_or_graph(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--all", "--graph", "mermaid", "--json")
    assert code == 2 and "--all prints every plan" in json.loads(out)["error"]["message"]


# ---- --all: every stack and phase in one process ------------------------------------------------

STACK_PHASES = [(s, n) for s in ("dev", "prod") for n in (1, 2, 3, 4, 5)]


@pytest.fixture(scope="module")
def every_plan_json() -> tuple[list[dict[str, Any]], str]:
    """``jobstream plan --all --json``, run once for the tests below: (the array, stderr)."""
    with pytest.MonkeyPatch.context() as patch:
        out, err = io.StringIO(), io.StringIO()
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        assert main(["plan", "--all", "--json"]) == 0
    document = json.loads(out.getvalue())
    assert isinstance(document, list)
    return document, err.getvalue()


def test_all_json_is_one_array_with_every_stack_and_phase(
    every_plan_json: tuple[list[dict[str, Any]], str],
) -> None:
    plans, _ = every_plan_json
    assert [(p["stack"], p["phase"]) for p in plans] == STACK_PHASES


def test_all_gives_the_plans_one_plan_at_a_time_gives(
    every_plan_json: tuple[list[dict[str, Any]], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plans, _ = every_plan_json
    _, out, _ = run(capsys, "plan", "--stack", "prod", "--phase", "3", "--json")
    assert json.loads(out) == plans[STACK_PHASES.index(("prod", 3))]


def test_all_draws_no_progress_when_stderr_is_not_a_terminal(
    every_plan_json: tuple[list[dict[str, Any]], str],
) -> None:
    _, err = every_plan_json
    assert err == ""


def test_all_table_summarises_each_plan_with_its_counts(
    capsys: pytest.CaptureFixture[str], every_plan_json: tuple[list[dict[str, Any]], str]
) -> None:
    code, out, _ = run(capsys, "plan", "--all", "--phase", "3")
    assert code == 0
    rows = {
        cells[0]: cells[1:5]
        for line in out.splitlines()
        if line.startswith("│")
        for cells in [[c.strip() for c in line.split("│")[1:-1]]]
    }
    documents = {(p["stack"], p["phase"]): p for p in every_plan_json[0]}
    for stack in ("dev", "prod"):
        resources = documents[stack, 3]["resources"]
        # Components are this program's own types; everything else is created by a deployment.
        components = [r for r in resources if r["type"].startswith("jobstream:")]
        custom = [r for r in resources if not r["type"].startswith("jobstream:")]
        assert rows[stack] == [
            "3 (consumer migration)",
            str(len(custom)),
            str(len(components)),
            str(sum(1 for r in custom if r["protect"])),
        ], f"{stack}: the row does not count what the plan holds"
    assert rows["prod"][3] != "0", "prod protects its stateful resources"
    assert "components not counted" in out


# ---- a pipe on stdout, a terminal on stderr -----------------------------------------------------

LONG_URN = (
    "urn:pulumi:dev::jobstream::jobstream:consumer:ConsumerService"
    "$aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule::consumer-https"
)


def run_piped(*argv: str, stderr_on_a_terminal: bool = False) -> tuple[str, str]:
    """A command in a fresh process, stdout through a pipe, COLUMNS=80 (a narrow terminal's
    setting), stderr through a pipe or on a pseudo-terminal: (stdout, stderr)."""
    import pty

    leader, follower = pty.openpty() if stderr_on_a_terminal else (-1, -1)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ops.cli", *argv],
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "80"},
            stdout=subprocess.PIPE,
            stderr=follower if stderr_on_a_terminal else subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
        err = result.stderr or ""
        if stderr_on_a_terminal:
            os.close(follower)
            seen = b""
            with contextlib.suppress(OSError):
                while chunk := os.read(leader, 65536):
                    seen += chunk
            err = seen.decode(errors="replace")
    finally:
        if stderr_on_a_terminal:
            os.close(leader)
    assert result.returncode == 0, err
    return result.stdout, err


@pytest.fixture(scope="module")
def diff_through_a_pipe() -> tuple[str, str]:
    """``jobstream plan --stack dev --diff-from-phase 2`` (two plans): stdout piped, stderr on a
    terminal."""
    return run_piped("plan", "--stack", "dev", "--diff-from-phase", "2", stderr_on_a_terminal=True)


def test_piped_diff_prints_each_urn_whole_on_its_line(
    diff_through_a_pipe: tuple[str, str],
) -> None:
    out, _ = diff_through_a_pipe
    assert len(LONG_URN) > 80
    assert f"+ {LONG_URN}" in out.splitlines()
    assert '      consumer_modes.kafka: "off" -> "verify"' in out.splitlines()


def test_progress_shows_on_a_terminal_when_there_is_more_than_one_plan(
    diff_through_a_pipe: tuple[str, str],
) -> None:
    out, err = diff_through_a_pipe
    assert "planning dev phase 2" in err
    assert "planning" not in out


def test_piped_cost_table_cuts_no_cell() -> None:
    out, _ = run_piped("cost", "--stack", "prod")
    assert "RDS PostgreSQL db.r6g.large instance hours" in out
    assert "…" not in out
