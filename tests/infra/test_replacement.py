"""infra/replacement.py: which input changes replace a stateful resource (issue 12 defect 3).

The mock engine cannot tell an update from a replacement; the lists follow
terraform-provider-aws (schema ForceNew and CustomizeDiff), which each list names."""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan import PlanSet
from infra.replacement import (
    BATCH_COMPUTE_ENVIRONMENT,
    MSK_CLUSTER,
    MSK_CONFIGURATION,
    RDS_INSTANCE,
    RDS_PROXY,
    REPLACING_INPUTS,
    replacement,
)
from tests.infra.test_phase_transitions import STATEFUL_TYPES


def fargate(**resources: Any) -> dict[str, Any]:
    return {
        "namePrefix": "jobstream-dev-ce-",
        "type": "MANAGED",
        "computeResources": {"type": "FARGATE", "maxVcpus": 8, "subnets": ["a"], **resources},
    }


def test_every_stateful_type_has_replacing_inputs_with_a_source() -> None:
    missing = [t for t in (*STATEFUL_TYPES, BATCH_COMPUTE_ENVIRONMENT) if t not in REPLACING_INPUTS]
    assert missing == []
    for type_, rule in REPLACING_INPUTS.items():
        assert rule.source.startswith("terraform-provider-aws internal/service/"), type_
        assert rule.always, type_


def test_a_new_compute_environment_name_prefix_replaces_it() -> None:
    found = replacement(
        BATCH_COMPUTE_ENVIRONMENT, fargate(), {**fargate(), "namePrefix": "jobstream-x-ce-"}
    )
    assert found is not None and found.inputs == ("namePrefix",) and found.blocker


def test_fargate_subnets_and_max_vcpus_update_in_place() -> None:
    """CustomizeDiff ForceNews subnets/security groups only for non-Fargate resources."""
    assert replacement(BATCH_COMPUTE_ENVIRONMENT, fargate(), fargate(subnets=["a", "b"])) is None
    assert replacement(BATCH_COMPUTE_ENVIRONMENT, fargate(), fargate(maxVcpus=64)) is None


def test_ec2_instance_types_replace_an_environment_without_an_updatable_strategy() -> None:
    old = fargate(type="SPOT", allocationStrategy="SPOT_PRICE_CAPACITY_OPTIMIZED",
                  instanceTypes=["m5.large"])  # fmt: skip
    new = {**old, "computeResources": {**old["computeResources"], "instanceTypes": ["m6i.large"]}}
    found = replacement(BATCH_COMPUTE_ENVIRONMENT, old, new)
    assert found is not None and found.inputs == ("computeResources.instanceTypes",)


def test_ec2_instance_types_update_in_place_with_best_fit_progressive() -> None:
    old = fargate(type="EC2", allocationStrategy="BEST_FIT_PROGRESSIVE", instanceTypes=["m5"])
    new = {**old, "computeResources": {**old["computeResources"], "instanceTypes": ["m6i"]}}
    assert replacement(BATCH_COMPUTE_ENVIRONMENT, old, new) is None


def test_a_custom_service_role_makes_subnet_changes_replace_ec2_environments() -> None:
    old = {**fargate(type="EC2", allocationStrategy="BEST_FIT_PROGRESSIVE"),
           "serviceRole": "arn:aws:iam::123456789012:role/batch"}  # fmt: skip
    new = {**old, "computeResources": {**old["computeResources"], "subnets": ["b"]}}
    found = replacement(BATCH_COMPUTE_ENVIRONMENT, old, new)
    assert found is not None and found.inputs == ("computeResources.subnets",)


@pytest.mark.parametrize(
    ("old", "new", "replaced"),
    [("3.8.x", "3.9.x", False), ("3.9.x", "3.8.x", True), ("3.6.0", "3.8.x", False)],
)
def test_only_a_kafka_version_downgrade_replaces_the_cluster(
    old: str, new: str, replaced: bool
) -> None:
    """customdiff.ForceNewIfChange("kafka_version", semver.LessThan(new, old))."""
    found = replacement(MSK_CLUSTER, {"kafkaVersion": old}, {"kafkaVersion": new})
    assert (found is not None) is replaced


def test_msk_cluster_security_groups_inside_the_broker_group_replace_it() -> None:
    old = {"brokerNodeGroupInfo": {"instanceType": "kafka.m7g.large", "securityGroups": ["a"]}}
    bigger = {"brokerNodeGroupInfo": {"instanceType": "kafka.m7g.xlarge", "securityGroups": ["a"]}}
    moved = {"brokerNodeGroupInfo": {"instanceType": "kafka.m7g.large", "securityGroups": ["b"]}}
    assert replacement(MSK_CLUSTER, old, bigger) is None  # broker type: in place
    found = replacement(MSK_CLUSTER, old, moved)
    assert found is not None and found.inputs == ("brokerNodeGroupInfo.securityGroups",)


def test_a_configuration_rename_replaces_it() -> None:
    found = replacement(MSK_CONFIGURATION, {"name": "a"}, {"name": "b", "serverProperties": "x"})
    assert found is not None and found.inputs == ("name",)


def test_database_replacing_and_in_place_inputs() -> None:
    assert replacement(RDS_INSTANCE, {"dbName": "a"}, {"dbName": "b"}) is not None
    assert replacement(RDS_INSTANCE, {"engineVersion": "16"}, {"engineVersion": "17"}) is None
    assert replacement(RDS_INSTANCE, {"identifier": "a"}, {"identifier": "b"}) is None


def test_proxy_subnets_replace_it_and_its_name_does_not() -> None:
    assert replacement(RDS_PROXY, {"vpcSubnetIds": ["a"]}, {"vpcSubnetIds": ["b"]}) is not None
    assert replacement(RDS_PROXY, {"name": "a"}, {"name": "b"}) is None


def test_untracked_types_are_never_blockers() -> None:
    assert replacement("aws:ec2/subnet:Subnet", {"cidrBlock": "a"}, {"cidrBlock": "b"}) is None


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_phase_change_replaces_a_stateful_resource(plans: PlanSet, stack: str) -> None:
    from infra.plan_diff import diff_plans
    from jobstream.contract.phases import adjacent_changes

    for old, new in adjacent_changes():
        diff = diff_plans(plans.get(stack, old), plans.get(stack, new))
        blockers = [c.urn for c in diff.changed if c.replacement is not None]
        assert blockers == [], f"{stack} {old}->{new} replaces {blockers}"
