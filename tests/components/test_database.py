"""The database component (RDS PostgreSQL + RDS Proxy), through the offline plan."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.database import final_snapshot_keepers
from infra.mocks import PlanMocks
from infra.plan import Plan, PlanSet, run_plan
from infra.replacement import RDS_INSTANCE, REPLACING_INPUTS
from jobstream.contract.phases import PHASES
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
SECRET = "aws:secretsmanager/secret:Secret"
APP_USER = "jobstream_app"  # Pulumi.<stack>.yaml: jobstream:dbAppUsername (the default)
APP_SECRET_ARN = re.compile(
    rf"arn:aws:secretsmanager:us-east-1:123456789012:secret:"
    rf"rds-db-credentials/jobstream-(dev|prod)-db-proxy/{APP_USER}-\w{{6}}"
)
PASSWORD_NAMED_INPUTS = {
    "manageMasterUserPassword": True,
    # How the proxy authenticates clients (SCRAM on the wire, the IAM token as the password):
    # an auth type, not a password.
    "auths[1].clientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
}
"""The only inputs whose path says "password", with the only values they may have."""
CLIENT_GRANT = re.compile(r"^database-(proxy-from|connect)-")
"""Per-client rules and grants (``allow_client`` / ``grant_connect``): they follow the client."""


@pytest.fixture(scope="module")
def dev(plans: PlanSet) -> Plan:
    return plans.get("dev", 1)


@pytest.fixture(scope="module")
def existing(plans: PlanSet) -> Plan:
    return plans.get("dev", phase=1, overrides={"jobstream:existingDbInstanceId": EXISTING})


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
                assert path in PASSWORD_NAMED_INPUTS and value == PASSWORD_NAMED_INPUTS[path], (
                    f"{r.urn}: input {path} carries a password"
                )
            if "secret" in leaf.lower() and isinstance(value, str):
                assert value.startswith("arn:aws:"), f"{r.urn}: {path} = {value!r}"
    # The walk covered the whole plan and met each password-named input exactly once.
    assert leaves > 300 and sorted(password_keys) == sorted(PASSWORD_NAMED_INPUTS)


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
    assert db.inputs["finalSnapshotIdentifier"].startswith("jobstream-prod-db-final-"), db.urn
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
    auth, _app_user = proxy.inputs["auths"]
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
    """The master secret and the app-user secret (both in the proxy's auths), nothing else."""
    proxy = dev.one(PROXY, "database-proxy")
    secrets = [auth["secretArn"] for auth in proxy.inputs["auths"]]
    assert secrets[0].startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-")
    assert APP_SECRET_ARN.fullmatch(secrets[1]), secrets[1]
    key_arn = dev.one(INSTANCE, "database").inputs["kmsKeyId"]
    policy = json.loads(dev.one(ROLE_POLICY, "database-proxy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ReadProxySecrets", "DecryptProxySecretsThroughSecretsManager"}
    read, decrypt = by_sid["ReadProxySecrets"], by_sid["DecryptProxySecretsThroughSecretsManager"]
    assert read["Resource"] == secrets, f"{proxy.urn}: the role reads {read['Resource']}"
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


def test_pool_and_idle_timeout_settings_come_from_config(plans: PlanSet) -> None:
    plan = plans.get(
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
    auth, _app_user = existing.one(PROXY, "database-proxy").inputs["auths"]
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


# ---- the app user: its proxy secret ------------------------------------------------------------

SECRETS_MANAGER = "aws:secretsmanager/"
APP_SECRET_INPUTS = {"name", "description", "kmsKeyId", "recoveryWindowInDays", "tags"}
"""Everything the app-user secret may be given: no value (secretString/secretBinary) among it."""


def app_secret_arn(plan: Plan) -> str:
    """The ARN the mock engine gives the app-user secret (the proxy's auth must carry it)."""
    secret = plan.one(SECRET, "database-app-user")
    return PlanMocks(plan.config.region)._arn(
        "secretsmanager", "Secret", secret.inputs["name"], secret.inputs
    )


def proxy_policy(plan: Plan) -> dict[str, dict[str, Any]]:
    policy = json.loads(plan.one(ROLE_POLICY, "database-proxy").inputs["policy"])
    return {s["Sid"]: s for s in policy["Statement"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_proxy_admits_the_app_user_with_iam_auth_required_through_its_own_secret(
    plans: PlanSet, stack: str
) -> None:
    plan = plans.get(stack, 1)
    proxy = plan.one(PROXY, "database-proxy")
    master, app_user = proxy.inputs["auths"]
    assert app_user == {
        "authScheme": "SECRETS",
        "iamAuth": "REQUIRED",
        "clientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
        "secretArn": app_secret_arn(plan),
        "username": APP_USER,
        "description": f"{APP_USER}: value set by jobstream db-bootstrap",
    }, f"{proxy.urn}: second auth entry is not the app user's"
    assert master["secretArn"] != app_user["secretArn"], proxy.urn
    assert proxy.inputs["requireTls"] is True, proxy.urn


def test_app_user_secret_is_named_for_the_proxy_and_the_user(dev: Plan) -> None:
    secret = dev.one(SECRET, "database-app-user")
    assert secret.inputs["name"] == f"rds-db-credentials/jobstream-dev-db-proxy/{APP_USER}"
    assert APP_SECRET_ARN.fullmatch(app_secret_arn(dev)), secret.urn
    assert in_component(dev, secret, DATABASE), f"{secret.urn} is not under the database"


def test_app_user_follows_the_db_app_username_key(plans: PlanSet) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:dbAppUsername": "ml_writer"})
    secret = plan.one(SECRET, "database-app-user")
    assert secret.inputs["name"] == "rds-db-credentials/jobstream-dev-db-proxy/ml_writer"
    app_user = plan.one(PROXY, "database-proxy").inputs["auths"][1]
    assert (app_user["username"], app_user["secretArn"]) == ("ml_writer", app_secret_arn(plan))
    (grant,) = json.loads(plan.one(ROLE_POLICY, "database-connect-batch").inputs["policy"])[
        "Statement"
    ]
    assert grant["Resource"].endswith("/ml_writer"), "rds-db:connect names another user"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_app_user_secret_is_encrypted_with_the_databases_customer_managed_key(
    plans: PlanSet, stack: str
) -> None:
    plan = plans.get(stack, 1)
    secret = plan.one(SECRET, "database-app-user")
    key = plan.one(KMS_KEY, "database-key")
    assert in_component(plan, key, DATABASE), key.urn
    assert secret.inputs["kmsKeyId"] == plan.one(INSTANCE, "database").inputs["kmsKeyId"], (
        f"{secret.urn}: not encrypted with the database's key"
    )
    assert re.fullmatch(
        r"arn:aws:kms:us-east-1:123456789012:key/[0-9a-f-]{36}", secret.inputs["kmsKeyId"]
    )
    assert "`jobstream db-bootstrap`" in secret.inputs["description"], secret.urn


@pytest.mark.parametrize(("stack", "phase"), [(s, p) for s in ("dev", "prod") for p in PHASES])
def test_app_user_secret_has_no_value_anywhere_in_the_plan(
    plans: PlanSet, stack: str, phase: int
) -> None:
    """Pulumi creates the secret only: no SecretVersion (or any other value resource) and no
    value input, so the password never reaches Pulumi state."""
    plan = plans.get(stack, phase)
    secrets_manager = [r for r in plan.resources if r.type.startswith(SECRETS_MANAGER)]
    assert [r.type for r in secrets_manager] == [SECRET], (
        f"{stack} phase {phase}: Secrets Manager resources besides the secret: "
        f"{[r.urn for r in secrets_manager if r.type != SECRET]}"
    )
    (secret,) = secrets_manager
    assert set(secret.inputs) <= APP_SECRET_INPUTS, (
        f"{secret.urn}: unexpected inputs {sorted(set(secret.inputs) - APP_SECRET_INPUTS)}"
    )
    assert "name" in secret.inputs and "kmsKeyId" in secret.inputs, secret.urn


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_proxy_role_may_read_exactly_the_master_and_app_user_secrets(
    plans: PlanSet, stack: str
) -> None:
    plan = plans.get(stack, 1)
    master = plan.one(PROXY, "database-proxy").inputs["auths"][0]["secretArn"]
    read = proxy_policy(plan)["ReadProxySecrets"]
    assert read["Resource"] == [master, app_secret_arn(plan)], (
        f"{stack}: the proxy role reads {read['Resource']}"
    )
    assert "secretsmanager:GetSecretValue" in read["Action"]
    assert "Condition" not in read


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_proxy_role_decrypts_only_through_secrets_manager_with_the_secrets_key(
    plans: PlanSet, stack: str
) -> None:
    plan = plans.get(stack, 1)
    statements = proxy_policy(plan)
    kms = {sid: s for sid, s in statements.items() if "kms:" in json.dumps(s["Action"])}
    assert list(kms) == ["DecryptProxySecretsThroughSecretsManager"], f"{stack}: {list(kms)}"
    decrypt = kms["DecryptProxySecretsThroughSecretsManager"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == plan.one(SECRET, "database-app-user").inputs["kmsKeyId"]
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
    }, f"{stack}: kms:Decrypt not limited to Secrets Manager"


@pytest.mark.parametrize(
    ("stack", "protected"), [("dev", False), ("prod", True)], ids=["dev", "prod"]
)
def test_app_user_secret_is_protected_like_the_instance(
    plans: PlanSet, stack: str, protected: bool
) -> None:
    plan = plans.get(stack, 1)
    secret = plan.one(SECRET, "database-app-user")
    instance = plan.one(INSTANCE, "database")
    assert secret.protect is protected is instance.protect, (
        f"{secret.urn}: protect={secret.protect}, the instance's is {instance.protect}"
    )


def test_existing_instance_app_user_secret_uses_the_master_secrets_key(existing: Plan) -> None:
    """Fronting an existing instance creates no key: the app-user secret takes the key of the
    instance's RDS-managed secret, which the proxy role already decrypts through Secrets Manager."""
    master, app_user = existing.one(PROXY, "database-proxy").inputs["auths"]
    assert (app_user["username"], app_user["iamAuth"]) == (APP_USER, "REQUIRED")
    assert app_user["secretArn"] == app_secret_arn(existing)
    secret = existing.one(SECRET, "database-app-user")
    statements = proxy_policy(existing)
    assert statements["ReadProxySecrets"]["Resource"] == [
        master["secretArn"],
        app_user["secretArn"],
    ]
    decrypt = statements["DecryptProxySecretsThroughSecretsManager"]
    assert decrypt["Resource"] == secret.inputs["kmsKeyId"], secret.urn
    assert secret.inputs["kmsKeyId"].startswith("arn:aws:kms:us-east-1:123456789012:key/")


# ---- issue 12: engine version, log groups, final snapshot, Performance Insights ------------------

RANDOM_ID = "random:index/randomId:RandomId"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def test_engine_version_is_the_major_with_auto_minor_upgrades(dev: Plan) -> None:
    """Issue 12 defect 2. With auto minor upgrades on, a pinned minor ("16.4") plans a
    downgrade after RDS upgrades the instance. The provider docs: "If
    auto_minor_version_upgrade is enabled, you can provide a prefix of the version such as 8.0
    (for 8.0.36). The actual engine version used is returned in the attribute
    engine_version_actual"; compareActualEngineVersion keeps "16" when RDS runs 16.x."""
    db = dev.one(INSTANCE, "database")
    assert (db.inputs["engineVersion"], db.inputs["autoMinorVersionUpgrade"]) == ("16", True), (
        f"{db.urn}: a minor pin with auto minor upgrades on plans a downgrade"
    )
    assert dev.one(PARAMETER_GROUP).inputs["family"] == "postgres16"


def test_auto_minor_upgrade_follows_config_and_then_allows_a_minor_pin() -> None:
    plan = run_plan(
        "dev",
        phase=1,
        overrides={
            "jobstream:dbAutoMinorVersionUpgrade": "false",
            "jobstream:dbEngineVersion": "16.11",
        },
    )
    db = plan.one(INSTANCE, "database")
    assert (db.inputs["engineVersion"], db.inputs["autoMinorVersionUpgrade"]) == ("16.11", False)


def test_instance_depends_on_its_log_groups(dev: Plan) -> None:
    """Issue 12 defect 9. RDS creates /aws/rds/instance/<id>/<log> itself, without retention,
    when the export starts before the group exists (terraform-provider-aws #5348, AWS Support:
    "RDS by default creates the log group with NO retention period"): the instance must depend
    on the groups this stack creates."""
    db = dev.one(INSTANCE, "database")
    groups = [
        r for r in dev.of_type(LOG_GROUP) if r.inputs["name"].startswith("/aws/rds/instance/")
    ]
    assert len(groups) == len(db.inputs["enabledCloudwatchLogsExports"]) == 2
    missing = [g.urn for g in groups if g.urn not in db.dependencies]
    assert missing == [], f"{db.urn} does not depend on {missing}"


def test_final_snapshot_name_has_a_suffix_pulumi_keeps(plans: PlanSet) -> None:
    """Issue 12 defect 9. A fixed final_snapshot_identifier fails the second deletion of an
    instance with the same identifier ("DBSnapshotAlreadyExists: Cannot create the snapshot
    because a snapshot with the identifier test-dev-final-snapshot already exists",
    terraform-aws-modules/terraform-aws-rds #82, whose review advises a random_id)."""
    plan = plans.get("prod", 1)
    db = plan.one(INSTANCE, "database")
    suffix = plan.one(RANDOM_ID, "database-final-snapshot")
    assert suffix.urn in db.dependencies, f"{db.urn} does not use {suffix.urn}"
    name = db.inputs["finalSnapshotIdentifier"]
    assert re.fullmatch(r"jobstream-prod-db-final-[0-9a-f]{8}", name), f"{db.urn}: {name!r}"
    # The snapshot identifier rules: a letter first, no '--', no trailing '-', <= 255.
    assert "--" not in name and not name.endswith("-") and len(name) <= 255


def test_final_snapshot_suffix_is_renewed_by_every_change_that_replaces_the_instance(
    plans: PlanSet,
) -> None:
    """Each incarnation of the instance gets its own snapshot name: the RandomId's keepers
    (a change replaces it) are the identifier and every replacing input the component sets."""
    plan = plans.get("prod", 1)
    db = plan.one(INSTANCE, "database")
    keepers = plan.one(RANDOM_ID, "database-final-snapshot").inputs["keepers"]
    replacing_set = {k for k in REPLACING_INPUTS[RDS_INSTANCE].always if k in db.inputs}
    assert replacing_set, "the instance sets no replacing input?"
    assert replacing_set <= set(keepers), (
        f"{db.urn}: replacing inputs {sorted(replacing_set - set(keepers))} do not renew the "
        "final snapshot's suffix"
    )
    assert keepers["identifier"] == db.inputs["identifier"]
    assert set(final_snapshot_keepers("x", "d", "u", "k")) == set(keepers)


def test_dev_takes_no_final_snapshot_and_has_no_suffix(dev: Plan) -> None:
    db = dev.one(INSTANCE, "database")
    assert db.inputs["skipFinalSnapshot"] is True and "finalSnapshotIdentifier" not in db.inputs
    assert dev.of_type(RANDOM_ID) == []


def test_prod_has_performance_insights_on_the_free_retention(plans: PlanSet) -> None:
    """Issue 12 defect 9. Performance Insights retention: "Valid values are 7, 731 (2 years)
    or a multiple of 31 ... Defaults to '7'" (7 days is the free tier); encrypted with the
    database's own key. The RDS Database Insights engine table lists no instance-class
    restriction for RDS for PostgreSQL."""
    plan = plans.get("prod", 1)
    db = plan.one(INSTANCE, "database")
    key = plan.one(KMS_KEY, "database-key")
    assert db.inputs["performanceInsightsEnabled"] is True, db.urn
    assert db.inputs["performanceInsightsRetentionPeriod"] == 7, db.urn
    assert db.inputs["performanceInsightsKmsKeyId"] == db.inputs["kmsKeyId"], db.urn
    assert key.urn in db.dependencies


def test_dev_leaves_performance_insights_off(dev: Plan) -> None:
    db = dev.one(INSTANCE, "database")
    assert db.inputs["performanceInsightsEnabled"] is False, db.urn
    assert "performanceInsightsRetentionPeriod" not in db.inputs, db.urn
