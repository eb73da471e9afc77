"""The database component (RDS PostgreSQL + RDS Proxy), through the offline plan."""

from __future__ import annotations

import json
import re

import pytest

from infra.phases import PHASES
from infra.plan import Plan, PlanSet, run_plan
from tests.components.conftest import (
    EGRESS,
    INGRESS,
    ROLE,
    ROLE_POLICY,
    in_component,
    rules_on,
    security_group_id,
    walk,
)

INSTANCE = "aws:rds/instance:Instance"
PROXY = "aws:rds/proxy:Proxy"
TARGET = "aws:rds/proxyTarget:ProxyTarget"
TARGET_GROUP = "aws:rds/proxyDefaultTargetGroup:ProxyDefaultTargetGroup"
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
KMS_KEY = "aws:kms/key:Key"
DATABASE = "jobstream:database:Database"
EXISTING = "jobstream-legacy-db"
CLIENT_GRANT = re.compile(r"^database-(proxy-from|connect)-")
"""Per-client rules and grants (``allow_client`` / ``grant_connect``): they follow the client."""


@pytest.fixture(scope="module")
def dev(plans: PlanSet) -> Plan:
    return plans.get("dev", 1)


@pytest.fixture(scope="module")
def existing() -> Plan:
    return run_plan("dev", phase=1, overrides={"jobstream:existingDbInstanceId": EXISTING})


# ---- the instance ----------------------------------------------------------------------------


def test_instance_storage_is_encrypted_with_the_stacks_rotating_kms_key(dev: Plan) -> None:
    db = dev.one(INSTANCE, "database")
    key = dev.one(KMS_KEY, "database-key")
    assert db.inputs["storageEncrypted"] is True, f"{db.urn}: storage not encrypted"
    assert re.fullmatch(
        r"arn:aws:kms:us-east-1:123456789012:key/[0-9a-f-]{36}", db.inputs["kmsKeyId"]
    ), db.urn
    assert db.inputs["masterUserSecretKmsKeyId"] == db.inputs["kmsKeyId"], db.urn
    assert key.inputs["enableKeyRotation"] is True, f"{key.urn}: key rotation off"


def test_instance_is_not_publicly_accessible(dev: Plan) -> None:
    db = dev.one(INSTANCE, "database")
    assert db.inputs["publiclyAccessible"] is False, f"{db.urn} is public"


def test_instance_lives_in_the_private_subnets(dev: Plan) -> None:
    subnets = dev.one(SUBNET_GROUP, "database-subnets")
    db = dev.one(INSTANCE, "database")
    assert subnets.inputs["subnetIds"] == dev.outputs["privateSubnetIds"], subnets.urn
    assert db.inputs["dbSubnetGroupName"].startswith("jobstream-dev-db-"), db.urn


def test_parameter_group_forces_tls_and_is_the_instances(dev: Plan) -> None:
    group = dev.one(PARAMETER_GROUP, "database-params")
    params = {p["name"]: p["value"] for p in group.inputs["parameters"]}
    assert params.get("rds.force_ssl") == "1", f"{group.urn}: rds.force_ssl is not 1"
    assert group.inputs["family"] == "postgres16", group.urn
    db = dev.one(INSTANCE, "database")
    assert db.inputs["parameterGroupName"].startswith(group.inputs["namePrefix"]), db.urn


def test_master_password_is_managed_by_rds(dev: Plan) -> None:
    db = dev.one(INSTANCE, "database")
    assert db.inputs["manageMasterUserPassword"] is True, db.urn


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_password_appears_in_any_input_of_the_plan(plans: PlanSet, stack: str) -> None:
    plan = plans.get(stack, 1)
    leaves, password_keys = 0, []
    for r in plan.resources:
        for path, value in walk(dict(r.inputs)):
            leaves += 1
            leaf = path.rsplit(".", 1)[-1]
            if "password" in path.lower():  # any segment: a secret input shows as key.secret
                password_keys.append(path)
                assert path == "manageMasterUserPassword" and value is True, (
                    f"{r.urn}: input {path} carries a password"
                )
            if "secret" in leaf.lower() and isinstance(value, str):
                assert value.startswith("arn:aws:"), f"{r.urn}: {path} = {value!r}"
    # The walk covered the whole plan and met the one password-related input there is.
    assert leaves > 300 and password_keys == ["manageMasterUserPassword"]


def test_dev_backups_and_no_final_snapshot_follow_config(dev: Plan) -> None:
    db = dev.one(INSTANCE, "database")
    assert db.inputs["backupRetentionPeriod"] == 1, db.urn  # Pulumi.dev.yaml
    assert db.inputs["multiAz"] is False, db.urn
    assert db.inputs["deletionProtection"] is False, db.urn
    assert db.inputs["skipFinalSnapshot"] is True, db.urn


def test_prod_is_multi_az_with_deletion_protection_and_a_final_snapshot(plans: PlanSet) -> None:
    db = plans.get("prod", 1).one(INSTANCE, "database")
    assert db.inputs["multiAz"] is True, db.urn
    assert db.inputs["deletionProtection"] is True, db.urn
    assert db.inputs["skipFinalSnapshot"] is False, db.urn
    assert db.inputs["finalSnapshotIdentifier"] == "jobstream-prod-db-final", db.urn
    assert db.inputs["backupRetentionPeriod"] == 14, db.urn


def test_physical_names_come_from_naming(dev: Plan) -> None:
    assert dev.one(INSTANCE, "database").inputs["identifier"] == "jobstream-dev-db"
    assert dev.one(PROXY, "database-proxy").inputs["name"] == "jobstream-dev-db-proxy"


@pytest.mark.parametrize(
    ("stack", "protected"), [("dev", False), ("prod", True)], ids=["dev", "prod"]
)
def test_stateful_resources_are_protected_where_the_stack_asks(
    plans: PlanSet, stack: str, protected: bool
) -> None:
    plan = plans.get(stack, 1)
    for type_, name in (
        (INSTANCE, "database"),
        (PROXY, "database-proxy"),
        (KMS_KEY, "database-key"),
    ):
        r = plan.one(type_, name)
        assert r.protect is protected, f"{r.urn}: protect={r.protect}, expected {protected}"


# ---- the proxy -------------------------------------------------------------------------------


def test_proxy_requires_tls_and_iam_auth_through_the_rds_managed_secret(dev: Plan) -> None:
    proxy = dev.one(PROXY, "database-proxy")
    assert proxy.inputs["requireTls"] is True, f"{proxy.urn}: TLS not required"
    assert proxy.inputs["engineFamily"] == "POSTGRESQL", proxy.urn
    (auth,) = proxy.inputs["auths"]
    assert auth["iamAuth"] == "REQUIRED", f"{proxy.urn}: IAM auth not required"
    assert auth["authScheme"] == "SECRETS", proxy.urn
    assert re.fullmatch(
        r"arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-[0-9a-f-]+-\w+",
        auth["secretArn"],
    ), f"{proxy.urn}: not the RDS-managed secret: {auth['secretArn']}"
    assert proxy.inputs["vpcSubnetIds"] == dev.outputs["privateSubnetIds"], proxy.urn


def test_proxy_role_reads_only_the_master_secret_and_decrypts_only_via_secrets_manager(
    dev: Plan,
) -> None:
    proxy = dev.one(PROXY, "database-proxy")
    secret = proxy.inputs["auths"][0]["secretArn"]
    key_arn = dev.one(INSTANCE, "database").inputs["kmsKeyId"]
    policy = json.loads(dev.one(ROLE_POLICY, "database-proxy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ReadMasterSecret", "DecryptMasterSecretThroughSecretsManager"}
    read, decrypt = by_sid["ReadMasterSecret"], by_sid["DecryptMasterSecretThroughSecretsManager"]
    assert read["Resource"] == secret
    assert sorted(read["Action"]) == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ]
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", key_arn)
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
    }


def test_proxy_role_is_assumable_by_rds_in_this_account_only(dev: Plan) -> None:
    trust = json.loads(dev.one(ROLE, "database-proxy").inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "rds.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_pool_and_idle_timeout_settings_come_from_config() -> None:
    plan = run_plan(
        "dev",
        phase=1,
        overrides={
            "jobstream:proxyMaxConnectionsPercent": "70",
            "jobstream:proxyMaxIdleConnectionsPercent": "20",
            "jobstream:proxyConnectionBorrowTimeoutSeconds": "30",
            "jobstream:proxyIdleClientTimeoutSeconds": "600",
        },
    )
    group = plan.one(TARGET_GROUP, "database-proxy")
    assert group.inputs["connectionPoolConfig"] == {
        "maxConnectionsPercent": 70,
        "maxIdleConnectionsPercent": 20,
        "connectionBorrowTimeout": 30,
    }, group.urn
    assert plan.one(PROXY, "database-proxy").inputs["idleClientTimeout"] == 600


def test_proxy_targets_the_instance(dev: Plan) -> None:
    target = dev.one(TARGET, "database-proxy")
    assert target.inputs == {
        "dbInstanceIdentifier": "jobstream-dev-db",
        "dbProxyName": "jobstream-dev-db-proxy",
        "targetGroupName": "default",
    }, target.urn


# ---- security groups -------------------------------------------------------------------------


def test_database_admits_only_the_proxy_on_5432(dev: Plan) -> None:
    db_sg = security_group_id(dev, "database-db")
    proxy_sg = security_group_id(dev, "database-proxy")
    assert dev.one(INSTANCE, "database").inputs["vpcSecurityGroupIds"] == [db_sg]
    (rule,) = rules_on(dev, INGRESS, db_sg)
    assert {k: rule.inputs.get(k) for k in ("ipProtocol", "fromPort", "toPort")} == {
        "ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432,
    }, rule.urn  # fmt: skip
    assert rule.inputs["referencedSecurityGroupId"] == proxy_sg, rule.urn
    assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule.inputs), rule.urn
    assert rules_on(dev, EGRESS, db_sg) == [], "the database needs no egress"


def test_proxy_admits_only_the_batch_jobs_in_phase_1(dev: Plan) -> None:
    proxy_sg = security_group_id(dev, "database-proxy")
    batch_sg = security_group_id(dev, "batch-jobs")
    rules = rules_on(dev, INGRESS, proxy_sg)
    assert [r.inputs.get("referencedSecurityGroupId") for r in rules] == [batch_sg], [
        r.urn for r in rules
    ]
    (rule,) = rules
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (
        5432, 5432, "tcp",
    ), rule.urn  # fmt: skip


@pytest.mark.parametrize("phase", PHASES)
def test_proxy_ingress_never_admits_an_address_range(plans: PlanSet, phase: int) -> None:
    plan = plans.get("dev", phase)
    for rule in rules_on(plan, INGRESS, security_group_id(plan, "database-proxy")):
        assert "referencedSecurityGroupId" in rule.inputs, f"{rule.urn} admits an address range"
        assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule.inputs), rule.urn
        assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (5432, 5432), rule.urn


def test_proxy_egress_goes_to_the_database_only(dev: Plan) -> None:
    (rule,) = rules_on(dev, EGRESS, security_group_id(dev, "database-proxy"))
    assert rule.inputs["referencedSecurityGroupId"] == security_group_id(dev, "database-db")
    assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (5432, 5432), rule.urn


def test_database_security_groups_carry_no_inline_rules(dev: Plan) -> None:
    for name in ("database-db", "database-proxy"):
        group = dev.one("aws:ec2/securityGroup:SecurityGroup", name)
        assert not group.inputs.get("ingress") and not group.inputs.get("egress"), group.urn


# ---- clients: rds-db:connect -----------------------------------------------------------------


def test_batch_job_role_may_connect_as_the_app_user_through_this_proxy_only(dev: Plan) -> None:
    proxy_id = dev.outputs["dbProxyArn"].rsplit(":", 1)[-1]
    assert proxy_id.startswith("prx-")
    grant = dev.one(ROLE_POLICY, "database-connect-batch")
    assert grant.inputs["role"] == "batch-job", grant.urn
    (statement,) = json.loads(grant.inputs["policy"])["Statement"]
    assert statement == {
        "Sid": "ConnectThroughProxy",
        "Effect": "Allow",
        "Action": "rds-db:connect",
        "Resource": f"arn:aws:rds-db:us-east-1:123456789012:dbuser:{proxy_id}/jobstream_app",
    }, grant.urn


def test_client_rules_and_grants_are_children_of_the_database(dev: Plan) -> None:
    for type_, name in (
        (INGRESS, "database-proxy-from-batch"),
        (ROLE_POLICY, "database-connect-batch"),
    ):
        r = dev.one(type_, name)
        assert in_component(dev, r, DATABASE), f"{r.urn} is not under the database component"


# ---- phases --------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_database_inputs_never_change_with_the_phase(plans: PlanSet, stack: str) -> None:
    """Everything the database owns, except the per-client grants, is identical in every phase."""

    def owned(plan: Plan) -> dict[str, tuple[object, bool]]:
        return {
            r.urn: (r.inputs, r.protect)
            for r in plan.resources
            if in_component(plan, r, DATABASE) and not CLIENT_GRANT.match(r.name)
        }

    first = owned(plans.get(stack, PHASES[0]))
    assert len(first) >= 15
    for phase in PHASES[1:]:
        assert owned(plans.get(stack, phase)) == first, (
            f"{stack} phase {phase} changes the database"
        )


def test_batch_grants_disappear_with_batch_in_phase_5(plans: PlanSet) -> None:
    plan = plans.get("dev", 5)
    names = {r.name for r in plan.resources}
    assert "database-proxy-from-batch" not in names and "database-connect-batch" not in names


# ---- an existing instance ------------------------------------------------------------------


def test_existing_instance_creates_no_instance_and_no_key(existing: Plan) -> None:
    assert existing.of_type(INSTANCE) == []
    assert [k for k in existing.of_type(KMS_KEY) if in_component(existing, k, DATABASE)] == []
    assert existing.of_type(PARAMETER_GROUP) == []
    assert existing.outputs["dbInstanceIdentifier"] == EXISTING


def test_existing_instance_is_the_proxy_target_through_its_own_managed_secret(
    existing: Plan,
) -> None:
    target = existing.one(TARGET, "database-proxy")
    assert target.inputs["dbInstanceIdentifier"] == EXISTING, target.urn
    (auth,) = existing.one(PROXY, "database-proxy").inputs["auths"]
    assert auth["iamAuth"] == "REQUIRED" and auth["secretArn"].startswith(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-"
    )


def test_existing_instances_security_group_admits_the_proxy_and_the_proxy_only_it(
    existing: Plan,
) -> None:
    proxy_sg = security_group_id(existing, "database-proxy")
    (admit,) = [r for r in existing.of_type(INGRESS) if r.name.startswith("database-existing-")]
    assert admit.inputs["referencedSecurityGroupId"] == proxy_sg, admit.urn
    assert (admit.inputs["fromPort"], admit.inputs["toPort"]) == (5432, 5432), admit.urn
    (egress,) = rules_on(existing, EGRESS, proxy_sg)
    assert egress.inputs["referencedSecurityGroupId"] == admit.inputs["securityGroupId"]
