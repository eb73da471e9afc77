"""Phase changes that never lose state: every adjacent change, up and down, for dev and prod.

Each resource is mapped to the resource groups of the phase table that it needs: the group of
its component, plus the client's group for a grant or a rule that a component makes for a
client (``database-proxy-from-consumer`` needs DATABASE and CONSUMER_SERVICE). A resource
exists in a phase exactly when all of its groups do, so the resources a change adds and removes
are exactly those whose groups appear or disappear in the phase table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import pytest

from infra.config import ConfigError
from infra.plan import Plan, PlannedResource, PlanSet, run_plan
from infra.plan_diff import diff_plans
from jobstream.contract.phases import PHASES, ResourceGroup, adjacent_changes, phase
from ops import plan_cmd

STACKS = ("dev", "prod")
CHANGES = adjacent_changes()

COMPONENT_GROUPS: Mapping[str, ResourceGroup] = {
    "jobstream:network:Network": ResourceGroup.NETWORK,
    "jobstream:database:Database": ResourceGroup.DATABASE,
    "jobstream:queue:JobQueue": ResourceGroup.JOB_QUEUE,
    "jobstream:batch:Batch": ResourceGroup.BATCH,
    "jobstream:failedjobs:FailedJobsCapture": ResourceGroup.BATCH,
    "jobstream:kafka:Kafka": ResourceGroup.KAFKA,
    "jobstream:consumer:ConsumerService": ResourceGroup.CONSUMER_SERVICE,
    "jobstream:routing:RoutingParameter": ResourceGroup.ROUTING,
    "jobstream:producers:ProducerAccess": ResourceGroup.ROUTING,
    "jobstream:monitoring:Monitoring": ResourceGroup.MONITORING,
}
CLIENT_TOKENS: Mapping[str, ResourceGroup] = {
    "batch": ResourceGroup.BATCH,
    "consumer": ResourceGroup.CONSUMER_SERVICE,
}
"""A name token that marks a resource made for a client (a rule, a grant) by another component."""
MONITORING_TOKENS: Mapping[str, ResourceGroup] = {
    "sqs": ResourceGroup.JOB_QUEUE,
    "trigger": ResourceGroup.JOB_QUEUE,  # the migration triggers measure the SQS load
    "pipe": ResourceGroup.SQS_TRIGGER,
    "batch": ResourceGroup.BATCH,
    "msk": ResourceGroup.KAFKA,
    "kafka": ResourceGroup.KAFKA,
    "consumer": ResourceGroup.CONSUMER_SERVICE,
    "ecs": ResourceGroup.CONSUMER_SERVICE,
    "failed": ResourceGroup.BATCH,
}
"""Alarms are named after what they watch (``monitoring-msk-offline-partitions``)."""

STATEFUL_TYPES = (
    "aws:rds/instance:Instance",
    "aws:rds/proxy:Proxy",
    "aws:sqs/queue:Queue",
    "aws:msk/cluster:Cluster",
    "aws:msk/serverlessCluster:ServerlessCluster",
    "aws:msk/configuration:Configuration",
)
MSK_CLUSTER = "aws:msk/cluster:Cluster"


def groups_of(plan: Plan, resource: PlannedResource) -> frozenset[ResourceGroup]:
    """The phase-table groups this resource needs (empty: needed in every phase)."""
    component = resource if not resource.custom else plan.component_of(resource)
    if component is None:
        return frozenset()  # stack-level, e.g. the explicit AWS provider
    group = COMPONENT_GROUPS.get(component.type)
    assert group is not None, (
        f"{resource.urn}: component type {component.type} is not mapped to a phase-table "
        "group; add it to COMPONENT_GROUPS"
    )
    groups = {group}
    tokens = set(resource.name.split("-"))
    groups |= {g for token, g in CLIENT_TOKENS.items() if token in tokens}
    if group is ResourceGroup.MONITORING:
        groups |= {g for token, g in MONITORING_TOKENS.items() if token in tokens}
    return frozenset(groups)


def exists_in(groups: frozenset[ResourceGroup], n: int) -> bool:
    return all(phase(n).has(g) for g in groups)


def plan_of(plans: PlanSet, stack: str, n: int) -> Plan:
    return plans.get(stack, n)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("old", "new"), CHANGES, ids=[f"{a}to{b}" for a, b in CHANGES])
def test_a_change_adds_and_removes_exactly_what_the_phase_table_says(
    plans: PlanSet, stack: str, old: int, new: int
) -> None:
    before, after = plan_of(plans, stack, old), plan_of(plans, stack, new)
    diff = diff_plans(before, after)
    for r in diff.added:
        groups = groups_of(after, r)
        assert exists_in(groups, new) and not exists_in(groups, old), (
            f"{old}->{new} adds {r.urn}, but its groups {sorted(groups)} do not appear then"
        )
    for r in diff.removed:
        groups = groups_of(before, r)
        assert exists_in(groups, old) and not exists_in(groups, new), (
            f"{old}->{new} removes {r.urn}, but its groups {sorted(groups)} stay"
        )
    # And nothing that should come or go was missed.
    appearing = {r.urn for r in after.resources if not exists_in(groups_of(after, r), old)}
    leaving = {r.urn for r in before.resources if not exists_in(groups_of(before, r), new)}
    assert appearing == {r.urn for r in diff.added}
    assert leaving == {r.urn for r in diff.removed}
    assert diff.added or diff.removed or diff.changed, f"{old}->{new} changes nothing at all"


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("old", "new"), CHANGES, ids=[f"{a}to{b}" for a, b in CHANGES])
def test_a_resource_in_both_phases_keeps_its_urn(
    plans: PlanSet, stack: str, old: int, new: int
) -> None:
    before, after = plan_of(plans, stack, old), plan_of(plans, stack, new)
    after_urns = {r.urn for r in after.resources}
    staying = [r for r in before.resources if exists_in(groups_of(before, r), new)]
    assert staying, "no resource stays"
    lost = [r.urn for r in staying if r.urn not in after_urns]
    assert lost == [], f"{old}->{new} would replace (new URN for) {lost}"


@pytest.mark.parametrize("stack", STACKS)
def test_stateful_resources_have_identical_inputs_in_every_phase(
    plans: PlanSet, stack: str
) -> None:
    seen: dict[str, tuple[int, Mapping[str, object]]] = {}
    checked = 0
    for n in PHASES:
        for r in plan_of(plans, stack, n).resources:
            if r.type not in STATEFUL_TYPES:
                continue
            checked += 1
            if r.urn in seen:
                first, inputs = seen[r.urn]
                changed = sorted(
                    k for k in set(inputs) | set(r.inputs) if inputs.get(k) != r.inputs.get(k)
                )
                assert not changed, (
                    f"{r.urn}: inputs {changed} differ between phase {first} and phase {n}; a "
                    "phase change must never touch a stateful resource"
                )
            else:
                seen[r.urn] = (n, r.inputs)
    kinds = {urn.split("::")[2].split("$")[-1] for urn in seen}
    assert {"aws:rds/proxy:Proxy", "aws:sqs/queue:Queue", MSK_CLUSTER} <= kinds, kinds
    assert checked > len(seen), "no stateful resource was compared across phases"


def test_prod_protects_every_stateful_resource_in_every_phase(plans: PlanSet) -> None:
    for n in PHASES:
        for r in plan_of(plans, "prod", n).resources:
            if r.type in STATEFUL_TYPES:
                assert r.protect, f"prod phase {n}: {r.urn} is not protected"


def test_going_from_2_to_1_in_prod_would_delete_the_protected_cluster(plans: PlanSet) -> None:
    diff = diff_plans(plan_of(plans, "prod", 2), plan_of(plans, "prod", 1))
    clusters = [r for r in diff.removed if r.type == MSK_CLUSTER]
    assert len(clusters) == 1 and clusters[0].protect, (
        "2->1 in prod must show the MSK cluster as a protected deletion, which `pulumi up` "
        "refuses until it is explicitly unprotected"
    )
    shown = diff.to_json()["removed"]
    assert {"urn": clusters[0].urn, "type": MSK_CLUSTER, "custom": True, "protect": True} in shown


def test_going_from_4_to_5_in_prod_would_delete_the_protected_queues(plans: PlanSet) -> None:
    """The job queue, its DLQ and the failed-jobs capture: each holds jobs."""
    diff = diff_plans(plan_of(plans, "prod", 4), plan_of(plans, "prod", 5))
    queues = sorted(r.name for r in diff.removed if r.type == "aws:sqs/queue:Queue")
    assert queues == ["failed-jobs", "jobs", "jobs-dlq"]
    assert all(r.protect for r in diff.removed if r.type == "aws:sqs/queue:Queue")


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("old", "new"), [(3, 4), (4, 3)], ids=["3to4", "4to3"])
def test_cutover_flips_the_routing_and_leaves_the_sqs_path_running(
    plans: PlanSet, stack: str, old: int, new: int
) -> None:
    """DESIGN.md, phase 4: the SQS path drains. The change adds and removes nothing and touches
    only the routing document and what describes the phase (dashboard text)."""
    diff = diff_plans(plan_of(plans, stack, old), plan_of(plans, stack, new))
    assert (diff.added, diff.removed) == ((), ())
    changed_types = {c.type for c in diff.changed}
    assert changed_types == {"aws:ssm/parameter:Parameter", "aws:cloudwatch/dashboard:Dashboard"}, (
        f"{old}->{new} also changes {changed_types}: the pipe and the Batch job queue must stay on"
    )
    (routing,) = [c for c in diff.changed if c.type == "aws:ssm/parameter:Parameter"]
    before, after = (json.loads(v) for v in routing.keys["insecureValue"])
    assert (before["consumer_modes"], after["consumer_modes"]) == (
        {"sqs": "primary", "kafka": "verify"} if old == 3 else {"sqs": "drain", "kafka": "primary"},
        {"sqs": "drain", "kafka": "primary"} if new == 4 else {"sqs": "primary", "kafka": "verify"},
    )


@pytest.mark.parametrize("stack", STACKS)
def test_phase_5_is_refused_without_the_confirmation_key(stack: str) -> None:
    with pytest.raises(ConfigError) as caught:
        run_plan(stack, phase=5)
    assert "phase" in caught.value.keys
    assert "jobstream:phase" in str(caught.value)
    assert "jobstream:confirmCleanup" in str(caught.value)


def test_dev_does_not_protect_anything(plans: PlanSet) -> None:
    protected = [r.urn for n in PHASES for r in plan_of(plans, "dev", n).resources if r.protect]
    assert protected == []


# ---- the offline plan command shows it ----------------------------------------------------------

KAFKA_TYPES = {
    MSK_CLUSTER,
    "aws:msk/configuration:Configuration",
    "aws:msk/topic:Topic",
    "aws:ecs/service:Service",
}


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``jobstream plan ... --json``, through the command's own argument parser."""
    parser = argparse.ArgumentParser(prog="jobstream")
    plan_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["plan", *argv, "--json"])
    assert args.handler(args) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_json_of_dev_phase_3_shows_the_kafka_resources(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = cli_json(capsys, "--stack", "dev", "--phase", "3")
    resources = out["resources"]
    assert isinstance(resources, list)
    types = {r["type"] for r in resources}
    assert KAFKA_TYPES | {"aws:ssm/parameter:Parameter"} <= types
    (cluster,) = [r for r in resources if r["type"] == MSK_CLUSTER]
    inputs = cluster["inputs"]
    assert inputs["encryptionInfo"]["encryptionInTransit"]["clientBroker"] == "TLS"
    assert inputs["clientAuthentication"]["sasl"]["iam"] is True
    assert inputs["encryptionInfo"]["encryptionAtRestKmsKeyArn"].startswith("arn:aws:kms:")


def test_plan_json_of_dev_phase_1_shows_no_kafka_resource(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = cli_json(capsys, "--stack", "dev", "--phase", "1")
    resources = out["resources"]
    assert isinstance(resources, list)
    kafka = [r["urn"] for r in resources if r["type"] in KAFKA_TYPES or "kafka" in r["urn"]]
    assert kafka == []


def test_plan_diff_from_phase_shows_the_cluster_leaving_protected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = cli_json(capsys, "--stack", "prod", "--phase", "1", "--diff-from-phase", "2")
    removed = out["removed"]
    assert isinstance(removed, list)
    assert any(r["type"] == MSK_CLUSTER and r["protect"] is True for r in removed)
    assert out["added"] == []
