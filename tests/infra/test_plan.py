"""The offline plan harness: URNs, JSON shape, diffs, the diagram."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, PlanError, read_stack_config
from infra.plan import PlanSet, SharedEvaluations, engine_urn, run_plan, sharing_evaluations
from infra.plan_diff import diff_plans, value_changes
from infra.plan_views import component_uses, group_counts, mermaid


def test_top_level_urns_have_no_stack_type_prefix() -> None:
    stack_urn = "urn:pulumi:dev::jobstream::pulumi:pulumi:Stack::jobstream-dev"
    urn = engine_urn("dev", "jobstream", stack_urn, "jobstream:network:Network", "network")
    assert urn == "urn:pulumi:dev::jobstream::jobstream:network:Network::network"


def test_child_urns_carry_the_parents_full_type_chain() -> None:
    parent = "urn:pulumi:dev::jobstream::jobstream:a:A$jobstream:b:B::b"
    urn = engine_urn("dev", "jobstream", parent, "aws:sqs/queue:Queue", "q")
    assert urn == "urn:pulumi:dev::jobstream::jobstream:a:A$jobstream:b:B$aws:sqs/queue:Queue::q"


def test_plan_records_parents_as_component_urns(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    vpc = plan.one("aws:ec2/vpc:Vpc")
    assert (
        vpc.urn
        == "urn:pulumi:dev::jobstream::jobstream:network:Network$aws:ec2/vpc:Vpc::network-vpc"
    )
    assert vpc.parent == "urn:pulumi:dev::jobstream::jobstream:network:Network::network"


def test_json_has_the_documented_shape(plans: PlanSet) -> None:
    document = json.loads(json.dumps(plans.get("prod", 1).to_json()))
    assert set(document) == {"stack", "phase", "resources", "outputs"}
    assert (document["stack"], document["phase"]) == ("prod", 1)
    for r in document["resources"]:
        assert set(r) == {
            "urn",
            "type",
            "name",
            "parent",
            "inputs",
            "protect",
            "retainOnDelete",
            "dependencies",
            "importId",
            "custom",
        }
        assert r["importId"] is None or isinstance(r["importId"], str)
        assert isinstance(r["protect"], bool) and isinstance(r["retainOnDelete"], bool)
        assert r["importId"] is None  # prod adopts nothing
        assert isinstance(r["dependencies"], list) and isinstance(r["inputs"], dict)
    assert document["outputs"]["phase"] == 1


def test_inputs_use_the_engines_camel_case_names(plans: PlanSet) -> None:
    queue = plans.get("dev", 1).one("aws:sqs/queue:Queue", "jobs")
    assert (
        "visibilityTimeoutSeconds" in queue.inputs
        and "visibility_timeout_seconds" not in queue.inputs
    )


@pytest.mark.fresh_evaluations  # what sharing plans between callers rests on
def test_two_runs_give_identical_plans() -> None:
    first = json.dumps(run_plan("dev", phase=2).to_json(), sort_keys=True)
    second = json.dumps(run_plan("dev", phase=2).to_json(), sort_keys=True)
    assert first == second


@pytest.mark.fresh_evaluations
def test_an_evaluation_walks_no_stack_for_source_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's per-registration stack walk (``_get_stack_trace``) is skipped while a plan is
    evaluated, and put back afterwards: the plan never reads source positions."""
    import traceback

    from pulumi.runtime import resource as sdk

    walked: list[int] = []
    real_extract = traceback.extract_stack

    def counting(*args: Any, **kwargs: Any) -> Any:
        walked.append(1)
        return real_extract(*args, **kwargs)

    original = sdk._get_stack_trace  # pyright: ignore[reportPrivateUsage]  # a rename fails here
    monkeypatch.setattr(traceback, "extract_stack", counting)
    plan = run_plan("dev", phase=1)
    assert plan.resources and walked == [], f"the stack was walked {len(walked)} times"
    assert sdk._get_stack_trace is original, "the SDK's stack walk was not put back"  # pyright: ignore[reportPrivateUsage]


@pytest.mark.fresh_evaluations
def test_each_sdk_shortcut_is_in_place_while_a_plan_is_evaluated_and_put_back_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infra import plan as plan_module

    shortcuts = plan_module._SDK_SHORTCUTS  # pyright: ignore[reportPrivateUsage]
    originals = {
        s.attribute: getattr(s.module, s.attribute) for s in shortcuts
    }  # a rename fails here
    in_place: list[set[str]] = []
    register = plan_module.RecordingMonitor.RegisterResource

    def noting(self: plan_module.RecordingMonitor, request: Any) -> Any:
        in_place.append(
            {s.attribute for s in shortcuts if getattr(s.module, s.attribute) is s.replacement}
        )
        return register(self, request)

    monkeypatch.setattr(plan_module.RecordingMonitor, "RegisterResource", noting)
    run_plan("dev", phase=1)
    missing = [sorted(set(originals) - seen) for seen in in_place if seen != set(originals)]
    assert in_place and not missing, f"registrations without the shortcuts {missing[:3]}"
    put_back = {s.attribute: getattr(s.module, s.attribute) for s in shortcuts}
    assert put_back == originals, "an SDK function was not put back after the evaluation"


def test_the_unknowns_check_answers_as_the_sdks_does() -> None:
    from pulumi.output import Unknown
    from pulumi.runtime import rpc

    from infra import plan as plan_module

    ours = plan_module._contains_unknowns  # pyright: ignore[reportPrivateUsage]
    assert rpc.contains_unknowns is not ours, "outside an evaluation the SDK's own is in place"
    cyclic: list[Any] = [1, {"a": "b"}]
    cyclic.append(cyclic)
    cyclic_with_unknown: dict[str, Any] = {"x": [2, 3]}
    cyclic_with_unknown["self"] = cyclic_with_unknown
    cyclic_with_unknown["later"] = {"deep": [Unknown()]}
    shared = {"k": Unknown()}
    values: list[Any] = [
        None, 1, "text", Unknown(), [1, [2, {"k": Unknown()}]], {"a": {"b": [1, 2]}},
        (Unknown(),), {Unknown()}, cyclic, cyclic_with_unknown, [shared, shared], [[], {}],
    ]  # fmt: skip
    for value in values:
        assert ours(value) == rpc.contains_unknowns(value), f"disagrees on {value!r}"


@pytest.mark.fresh_evaluations
def test_an_evaluation_keeps_the_programs_errors_and_drops_its_debug_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pulumi
    from pulumi.runtime.mocks import MockEngine
    from pulumi.runtime.proto import engine_pb2

    from infra import stack

    sent: list[int] = []
    log = MockEngine.Log

    def noting(self: MockEngine, request: Any) -> None:
        sent.append(request.severity)
        log(self, request)

    def program(_cfg: Any) -> None:
        pulumi.log.debug("a debug line")
        pulumi.log.error("the program's own error")

    monkeypatch.setattr(MockEngine, "Log", noting)
    monkeypatch.setattr(stack, "build", program)
    with pytest.raises(PlanError, match="the program's own error"):
        run_plan("dev", phase=1)
    assert engine_pb2.DEBUG not in sent and engine_pb2.ERROR in sent


def test_shared_evaluations_evaluate_each_distinct_input_once() -> None:
    shared = SharedEvaluations()
    with sharing_evaluations(shared):
        by_phase = run_plan("dev", phase=2)
        by_override = run_plan("dev", overrides={"jobstream:phase": "2"})  # the same config
        other = run_plan("dev", phase=2, overrides={"jobstream:maxReceiveCount": "9"})
    assert by_override is by_phase and other is not by_phase
    assert (shared.evaluated, shared.reused) == (2, 1)


def test_a_changed_stack_file_is_evaluated_again_while_sharing(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml").read_text()
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(text)
    with sharing_evaluations(SharedEvaluations()):
        before = run_plan("dev", phase=1, directory=tmp_path)
        stack_file.write_text(text.rstrip("\n") + '\n  jobstream:maxReceiveCount: "9"\n')
        after = run_plan("dev", phase=1, directory=tmp_path)
    policy = "aws:sqs/redrivePolicy:RedrivePolicy"
    assert json.loads(after.one(policy, "jobs").inputs["redrivePolicy"])["maxReceiveCount"] == 9, (
        "the plan of the changed stack file must not be the one shared before the change"
    )
    assert before.one(policy, "jobs").inputs != after.one(policy, "jobs").inputs


def test_processes_sharing_a_directory_evaluate_each_input_once(tmp_path: Path) -> None:
    first, second = SharedEvaluations(directory=tmp_path), SharedEvaluations(directory=tmp_path)
    with sharing_evaluations(first):
        evaluated = run_plan("dev", phase=2)
    with sharing_evaluations(second):
        read = run_plan("dev", phase=2)
    assert (first.evaluated, second.evaluated, second.loaded) == (1, 0, 1), (
        "the second must read the plan the first wrote, not evaluate it again"
    )
    assert read == evaluated and read.by_urn() == evaluated.by_urn()


def test_a_process_waits_for_the_one_evaluating_the_same_input(
    plans: PlanSet, tmp_path: Path
) -> None:
    plan = plans.get("dev", 1)
    evaluating = threading.Event()

    def slow_evaluation() -> Any:
        evaluating.set()
        time.sleep(0.3)
        return plan

    def must_not_evaluate() -> Any:
        raise AssertionError("evaluated an input another process was evaluating")

    first, second = SharedEvaluations(directory=tmp_path), SharedEvaluations(directory=tmp_path)
    worker = threading.Thread(target=first.plan, args=("key", slow_evaluation))
    worker.start()
    assert evaluating.wait(10)
    got = second.plan("key", must_not_evaluate)
    worker.join()
    assert got == plan and (second.loaded, first.evaluated) == (1, 1)


def test_a_failed_evaluation_leaves_nothing_for_the_other_processes(
    plans: PlanSet, tmp_path: Path
) -> None:
    def failing() -> Any:
        raise PlanError("the program reported errors")

    with pytest.raises(PlanError):
        SharedEvaluations(directory=tmp_path).plan("key", failing)
    later = SharedEvaluations(directory=tmp_path)
    assert later.plan("key", lambda: plans.get("dev", 1)) == plans.get("dev", 1)
    assert (later.evaluated, later.loaded) == (1, 0)


def test_a_plan_that_cannot_be_stored_is_returned_and_leaves_no_partial_file(
    plans: PlanSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: Path, target: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", disk_full)
    plan = plans.get("dev", 1)
    assert SharedEvaluations(directory=tmp_path).plan("key", lambda: plan) is plan
    assert not list(tmp_path.glob("*.partial")), "a partial file was left behind"
    assert not list(tmp_path.glob("*.plan.pickle"))


def test_a_stored_plan_cut_short_is_evaluated_again_and_written_over(
    plans: PlanSet, tmp_path: Path
) -> None:
    plan = plans.get("dev", 1)
    SharedEvaluations(directory=tmp_path).plan("key", lambda: plan)
    (stored,) = tmp_path.glob("*.plan.pickle")
    stored.write_bytes(stored.read_bytes()[:100])
    again = SharedEvaluations(directory=tmp_path)
    assert again.plan("key", lambda: plan) is plan and (again.evaluated, again.loaded) == (1, 0)
    assert SharedEvaluations(directory=tmp_path).plan("key", lambda: plan) == plan


def test_dependencies_point_at_recorded_resources(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    urns = set(plan.by_urn())
    for r in plan.resources:
        assert set(r.dependencies) <= urns, (
            f"{r.urn} depends on unknown {set(r.dependencies) - urns}"
        )


def test_diff_reports_changed_input_keys_old_and_new(plans: PlanSet) -> None:
    old = plans.get("dev", phase=1)
    new = plans.get("dev", phase=1, overrides={"jobstream:maxReceiveCount": "9"})
    diff = diff_plans(old, new)
    assert not diff.added and not diff.removed
    (change,) = diff.changed
    assert change.urn.endswith("aws:sqs/redrivePolicy:RedrivePolicy::jobs")
    old_policy, new_policy = change.keys["redrivePolicy"]
    assert (
        json.loads(old_policy)["maxReceiveCount"] == 5
        and json.loads(new_policy)["maxReceiveCount"] == 9
    )


def test_diff_reports_added_and_removed_resources(plans: PlanSet) -> None:
    single = plans.get("dev", phase=1)
    per_az = plans.get("dev", phase=1, overrides={"jobstream:natStrategy": "per-az"})
    diff = diff_plans(single, per_az)
    added = sorted(r.urn.rsplit("::", 1)[-1] for r in diff.added)
    assert added == ["network-nat-1", "network-nat-1"]  # the EIP and the NAT gateway
    assert not diff.removed
    changed = {c.urn.rsplit("::", 1)[-1] for c in diff.changed}
    assert changed == {"network-private-1-nat"}  # its route moves to the new NAT gateway
    back = diff_plans(per_az, single)
    assert sorted(r.urn for r in back.removed) == sorted(r.urn for r in diff.added)


def test_mermaid_graph_has_a_node_per_component_and_their_links(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    text = mermaid(plan)
    assert text.startswith("flowchart LR\n")
    for component in plan.components():
        assert f'["{component.name}<br/>' in text, f"no node for {component.urn}"
    nodes = {line.split("[")[0].strip() for line in text.splitlines() if '["' in line}
    for line in text.splitlines():
        if "-->" in line:
            source, target = (part.strip() for part in line.split("-->"))
            assert source in nodes and target in nodes and source != target


def test_unknown_stack_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=r"no stack 'qa'.*stacks: dev, prod"):
        run_plan("qa")


def test_bad_config_fails_before_the_program_runs() -> None:
    with pytest.raises(ConfigError, match="jobstream:azCount"):
        run_plan("dev", overrides={"jobstream:azCount": "9"})


def test_stack_file_values_become_engine_strings() -> None:
    raw = read_stack_config("prod")
    assert raw["jobstream:phase"] == "1" and raw["jobstream:dbMultiAz"] == "true"


# ---- issue 12: the stack file reader -------------------------------------------------------------


def _stack_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: jobstream\nruntime: python\n")
    (tmp_path / "Pulumi.qa.yaml").write_text(text)
    return tmp_path


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    directory = _stack_file(
        tmp_path, "config:\n  aws:region: us-east-1\n  jobstream:phase: [3\n  jobstream:x: 1\n"
    )
    with pytest.raises(PlanError, match=r"^Pulumi\.qa\.yaml: line 4, column \d+: ") as caught:
        read_stack_config("qa", directory)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_duplicated_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    """PyYAML's safe_load keeps the last of two equal keys silently."""
    directory = _stack_file(
        tmp_path, "config:\n  jobstream:phase: 3\n  aws:region: us-east-1\n  jobstream:phase: 1\n"
    )
    with pytest.raises(
        PlanError,
        match=r"Pulumi\.qa\.yaml: line 4, .*'jobstream:phase' a second time \(first on line 2\)",
    ):
        read_stack_config("qa", directory)


def test_a_stack_file_without_a_config_mapping_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"Pulumi\.qa\.yaml: 'config' must be a mapping"):
        read_stack_config("qa", _stack_file(tmp_path, "config: [1, 2]\n"))


def test_a_config_mistake_is_refused_before_any_resource_is_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import infra.stack

    def build(_cfg: object) -> None:
        raise AssertionError("the program ran although the config was invalid")

    monkeypatch.setattr(infra.stack, "build", build)
    with pytest.raises(ConfigError) as caught:
        run_plan("dev", overrides={"jobsteam:natStrategy": "per-az"})
    assert caught.value.keys == ["jobsteam:natStrategy"]
    assert caught.value.source == "Pulumi.dev.yaml with --set overrides"


# ---- issue 12: replacements of stateful resources are blockers -----------------------------------


def test_diff_flags_a_compute_environment_replacement_as_a_blocker() -> None:
    """pulumi-aws #6233 / terraform-provider-aws #46925: replacing a compute environment fails
    at the delete ("Cannot delete, found existing JobQueue relationship")."""
    old = run_plan("dev", phase=1)
    new = run_plan("dev", phase=1, overrides={"jobstream:computeType": "SPOT"})
    (change,) = [c for c in diff_plans(old, new).changed if c.type.endswith("ComputeEnvironment")]
    assert change.replacement is not None, f"{change.urn}: replacement not flagged"
    assert change.replacement.blocker
    assert "computeResources.allocationStrategy" in change.replacement.inputs
    shown = diff_plans(old, new).to_json()["changed"]
    (entry,) = [c for c in shown if c["urn"] == change.urn]
    assert entry["replacement"]["blocker"] is True
    assert "computeResources.allocationStrategy" in entry["replacement"]["inputs"]


def test_diff_flags_an_msk_cluster_replacement_as_a_blocker() -> None:
    old = run_plan("dev", phase=2)
    new = run_plan(
        "dev", phase=2, overrides={"jobstream:azCount": "3", "jobstream:kafkaBrokerCount": "3"}
    )
    changes = {c.type: c for c in diff_plans(old, new).changed}
    cluster = changes["aws:msk/cluster:Cluster"]
    assert cluster.replacement is not None, f"{cluster.urn}: a third subnet replaces the cluster"
    assert "brokerNodeGroupInfo.clientSubnets" in cluster.replacement.inputs


def test_an_in_place_change_of_a_stateful_resource_is_not_a_blocker() -> None:
    old = run_plan("dev", phase=1)
    new = run_plan("dev", phase=1, overrides={"jobstream:dbInstanceClass": "db.t4g.small"})
    (change,) = [c for c in diff_plans(old, new).changed if c.type == "aws:rds/instance:Instance"]
    assert change.replacement is None, f"{change.urn}: instanceClass is an in-place update"
    assert diff_plans(old, new).to_json()["changed"][0]["replacement"] is None


# ---- what changed inside a value ---------------------------------------------------------------


def test_a_json_document_diff_names_the_keys_that_changed_old_and_new(plans: PlanSet) -> None:
    diff = diff_plans(plans.get("dev", 2), plans.get("dev", 3))
    (routing,) = [c for c in diff.changed if c.type == "aws:ssm/parameter:Parameter"]
    changes = {c.path: (c.old, c.new) for c in routing.value_changes("insecureValue")}
    assert changes == {"consumer_modes.kafka": ("off", "verify"), "phase": (2, 3)}


def test_the_diff_json_carries_the_changes_inside_a_json_value(plans: PlanSet) -> None:
    document = diff_plans(plans.get("dev", 2), plans.get("dev", 3)).to_json()
    (routing,) = [c for c in document["changed"] if c["type"] == "aws:ssm/parameter:Parameter"]
    key = routing["keys"]["insecureValue"]
    assert json.loads(key["old"])["phase"] == 2 and json.loads(key["new"])["phase"] == 3
    assert {"path": "consumer_modes.kafka", "old": "off", "new": "verify"} in key["changes"]


def test_an_item_inserted_in_a_list_is_one_addition_not_a_shift() -> None:
    old = [{"title": "a", "y": 0}, {"title": "b", "y": 6}]
    new = [{"title": "a", "y": 0}, {"title": "new", "y": 6}, {"title": "b", "y": 12}]
    changes = value_changes(old, new)
    assert [(c.path, c.added, c.removed) for c in changes] == [
        ("[1]", True, False),
        ("[2].y", False, False),
    ]
    assert (changes[1].old, changes[1].new) == (6, 12)


def test_a_changed_policy_statement_shows_the_action_path() -> None:
    def policy(action: str) -> str:
        return json.dumps({"Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})

    (change,) = value_changes(policy("sqs:SendMessage"), policy("sqs:ReceiveMessage"))
    assert (change.path, change.old, change.new) == (
        "Statement[0].Action",
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
    )


def test_keys_that_are_not_identifiers_are_quoted_in_the_path() -> None:
    (change,) = value_changes({"aws:SourceArn": "a"}, {"aws:SourceArn": "b"})
    assert change.path == '["aws:SourceArn"]'


# ---- one resource count -------------------------------------------------------------------------


def test_the_diff_counts_resources_as_the_table_does_and_components_apart(
    plans: PlanSet,
) -> None:
    before, after = plans.get("dev", 2), plans.get("dev", 3)
    counts = diff_plans(before, after).counts()
    res, comps = counts["resources"], counts["components"]
    assert res["added"] + res["changed"] + res["unchanged"] == len(after.custom_resources())
    assert res["removed"] + res["changed"] + res["unchanged"] == len(before.custom_resources())
    assert comps["added"] + comps["changed"] + comps["unchanged"] == len(after.components())
    assert sum(sum(c.values()) for _, _, c in group_counts(after)) == len(after.custom_resources())


# ---- the diagram --------------------------------------------------------------------------------

EVERY_PLAN = [(s, n) for s in ("dev", "prod") for n in (1, 2, 3, 4, 5)]


def edges(text: str) -> set[tuple[str, str]]:
    return {
        (a.strip(), b.strip())
        for line in text.splitlines()
        if "-->" in line and not line.strip().startswith("%%")
        for a, b in [line.split("-->")]
    }


def test_the_diagram_says_what_an_arrow_means(plans: PlanSet) -> None:
    lines = mermaid(plans.get("dev", 3)).splitlines()
    assert lines[0] == "flowchart LR"
    assert lines[1].startswith("  %% an arrow from A to B means: A uses B")


@pytest.mark.parametrize(("stack", "phase"), EVERY_PLAN)
def test_every_component_of_the_diagram_is_connected(
    plans: PlanSet, stack: str, phase: int
) -> None:
    text = mermaid(plans.get(stack, phase))
    nodes = {line.split("[")[0].strip() for line in text.splitlines() if '["' in line}
    linked = {node for edge in edges(text) for node in edge}
    assert nodes and nodes <= linked, f"unconnected: {nodes - linked}"


@pytest.mark.parametrize(("stack", "phase"), EVERY_PLAN)
def test_no_two_components_point_at_each_other(plans: PlanSet, stack: str, phase: int) -> None:
    arrows = edges(mermaid(plans.get(stack, phase)))
    assert not {(a, b) for a, b in arrows if (b, a) in arrows}


def test_monitoring_uses_what_its_alarms_watch(plans: PlanSet) -> None:
    plan = plans.get("dev", 3)
    names = {c.urn: c.name for c in plan.components()}
    uses = {(names[a], names[b]) for a, b in component_uses(plan)}
    assert {("monitoring", "jobs"), ("monitoring", "database"), ("monitoring", "kafka")} <= uses
    assert ("batch", "database") in uses and ("database", "batch") not in uses


def test_node_labels_count_resources_in_the_singular_for_one(plans: PlanSet) -> None:
    text = mermaid(plans.get("dev", 1))
    assert "ProducerAccess (1 resource)" in text and "(1 resources)" not in text
