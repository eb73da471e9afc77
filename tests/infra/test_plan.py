"""The offline plan harness: URNs, JSON shape, diffs, the diagram."""

from __future__ import annotations

import json

import pytest

from infra.config import ConfigError
from infra.plan import (
    PlanError,
    PlanSet,
    diff_plans,
    engine_urn,
    mermaid,
    read_stack_config,
    run_plan,
)


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
        }
        assert isinstance(r["protect"], bool) and isinstance(r["retainOnDelete"], bool)
        assert isinstance(r["dependencies"], list) and isinstance(r["inputs"], dict)
    assert document["outputs"]["phase"] == 1


def test_inputs_use_the_engines_camel_case_names(plans: PlanSet) -> None:
    queue = plans.get("dev", 1).one("aws:sqs/queue:Queue", "jobs")
    assert (
        "visibilityTimeoutSeconds" in queue.inputs
        and "visibility_timeout_seconds" not in queue.inputs
    )


def test_two_runs_give_identical_plans() -> None:
    first = json.dumps(run_plan("dev", phase=2).to_json(), sort_keys=True)
    second = json.dumps(run_plan("dev", phase=2).to_json(), sort_keys=True)
    assert first == second


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
