"""The Batch component (compute, job queue, job definition, SQS -> Batch pipe), offline plan."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import components.batch
import infra.config
from components.container_roles import ecr_repository_arn
from infra.plan import Plan, PlanSet
from infra.plan_diff import diff_plans
from infra.plan_views import iter_policy_documents
from jobstream.contract.choices import ComputeType
from jobstream.contract.exits import WorkerExit
from tests.components.conftest import (
    EGRESS,
    INGRESS,
    ROLE,
    ROLE_POLICY,
    in_component,
    rules_on,
    security_group_id,
)

COMPUTE = "aws:batch/computeEnvironment:ComputeEnvironment"
JOB_QUEUE = "aws:batch/jobQueue:JobQueue"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
PIPE = "aws:pipes/pipe:Pipe"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BATCH = "jobstream:batch:Batch"
DATABASE = "jobstream:database:Database"

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobstream-dev-jobs"
JOB_QUEUE_ARN = "arn:aws:batch:us-east-1:123456789012:job-queue/jobstream-dev-jobs"
JOB_DEFINITION_ARN = "arn:aws:batch:us-east-1:123456789012:job-definition/jobstream-dev-ml:1"
# AWS Batch evaluateOnExit patterns: letters, digits, '.', ':', spaces, optional trailing '*'.
BATCH_PATTERN = re.compile(r"^[A-Za-z0-9.: ]*\*?$")


@pytest.fixture(scope="module")
def dev(plans: PlanSet) -> Plan:
    return plans.get("dev", 1)


def container(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.one(JOB_DEFINITION, "batch-ml").inputs["containerProperties"])


# ---- phases ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "queue_state", "pipe_state"),
    [(1, "ENABLED", "RUNNING"), (2, "ENABLED", "RUNNING"), (3, "ENABLED", "RUNNING"),
     (4, "ENABLED", "RUNNING")],
)  # fmt: skip
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_job_queue_and_pipe_states_follow_the_phase_table(
    plans: PlanSet, stack: str, phase: int, queue_state: str, pipe_state: str
) -> None:
    plan = plans.get(stack, phase)
    queue, pipe = plan.one(JOB_QUEUE), plan.one(PIPE)
    assert queue.inputs["state"] == queue_state, f"{queue.urn} in phase {phase}"
    assert pipe.inputs["desiredState"] == pipe_state, f"{pipe.urn} in phase {phase}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_phase_5_has_no_batch_or_pipe_resources(plans: PlanSet, stack: str) -> None:
    plan = plans.get(stack, 5)
    left = [r.urn for r in plan.resources if r.type.startswith(("aws:batch", "aws:pipes"))]
    left += [r.urn for r in plan.resources if in_component(plan, r, BATCH) or r.type == BATCH]
    assert left == []
    assert len(plans.get(stack, 4).of_type(COMPUTE)) == 1  # kept in 4, for the rollback


@pytest.mark.parametrize(("old", "new"), [(3, 4), (4, 3)])
def test_moving_between_3_and_4_leaves_batch_and_the_pipe_untouched(
    plans: PlanSet, old: int, new: int
) -> None:
    """Phase 4 drains the SQS path: the pipe keeps submitting and the job queue stays enabled."""
    diff = diff_plans(plans.get("dev", old), plans.get("dev", new))
    batch_changes = {
        c.urn.rsplit("::", 1)[-1]: set(c.keys)
        for c in diff.changed
        if c.urn.split("::")[2].startswith(BATCH)
    }
    assert batch_changes == {}, f"{old}->{new} changes Batch resources: {batch_changes}"
    touched = [r.urn for r in (*diff.added, *diff.removed) if BATCH in r.urn]
    assert touched == []


def test_compute_environment_and_job_definition_never_change_with_the_phase(
    plans: PlanSet,
) -> None:
    first = plans.get("dev", 1)
    for phase in (2, 3, 4):
        plan = plans.get("dev", phase)
        for type_ in (COMPUTE, JOB_DEFINITION):
            assert plan.one(type_).inputs == first.one(type_).inputs, (
                f"{plan.one(type_).urn} changes in phase {phase}"
            )


# ---- compute environment and job queue -------------------------------------------------------


def test_compute_environment_is_fargate_spot_in_the_private_subnets(dev: Plan) -> None:
    compute = dev.one(COMPUTE, "batch-compute")
    resources = compute.inputs["computeResources"]
    assert compute.inputs["type"] == "MANAGED", compute.urn
    assert resources["type"] == "FARGATE_SPOT", compute.urn  # Pulumi.dev.yaml
    assert resources["maxVcpus"] == 8, compute.urn
    assert resources["subnets"] == dev.outputs["privateSubnetIds"], compute.urn
    assert resources["securityGroupIds"] == [security_group_id(dev, "batch-jobs")], compute.urn


def test_compute_environment_uses_the_service_linked_role(dev: Plan) -> None:
    compute = dev.one(COMPUTE, "batch-compute")
    assert "serviceRole" not in compute.inputs, f"{compute.urn} names a service role"


def test_compute_environment_is_named_by_prefix_so_it_can_be_replaced_first(dev: Plan) -> None:
    compute = dev.one(COMPUTE, "batch-compute")
    assert compute.inputs["namePrefix"] == "jobstream-dev-ce-", compute.urn
    assert "name" not in compute.inputs, compute.urn


def test_job_queue_points_at_the_compute_environment(dev: Plan) -> None:
    queue = dev.one(JOB_QUEUE, "batch-queue")
    compute = dev.one(COMPUTE, "batch-compute")
    (order,) = queue.inputs["computeEnvironmentOrders"]
    assert order["order"] == 1
    assert order["computeEnvironment"].startswith(
        "arn:aws:batch:us-east-1:123456789012:compute-environment/jobstream-dev-ce-"
    ), queue.urn
    assert compute.urn in queue.dependencies, queue.urn
    assert queue.inputs["name"] == "jobstream-dev-jobs", queue.urn


def test_spot_compute_uses_ec2_instances_with_an_instance_profile(plans: PlanSet) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:computeType": "SPOT"})
    resources = plan.one(COMPUTE, "batch-compute").inputs["computeResources"]
    assert resources["type"] == "SPOT"
    assert resources["allocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert resources["instanceTypes"] == ["m6i.large", "m5.large"]
    assert resources["instanceRole"].startswith("arn:aws:iam::123456789012:")
    assert plan.one(JOB_DEFINITION).inputs["platformCapabilities"] == ["EC2"]
    assert "networkConfiguration" not in container(plan)


def test_compute_type_enum_is_the_one_config_uses() -> None:
    assert components.batch.ComputeType is infra.config.ComputeType is ComputeType


# ---- security group ----------------------------------------------------------------------


def test_batch_security_group_has_no_ingress(dev: Plan) -> None:
    assert rules_on(dev, INGRESS, security_group_id(dev, "batch-jobs")) == []
    group = dev.one("aws:ec2/securityGroup:SecurityGroup", "batch-jobs")
    assert not group.inputs.get("ingress") and not group.inputs.get("egress"), group.urn


def test_batch_egress_is_https_and_postgres_to_the_proxy_only(dev: Plan) -> None:
    rules = rules_on(dev, EGRESS, security_group_id(dev, "batch-jobs"))
    seen = {
        (
            r.inputs["fromPort"],
            r.inputs.get("cidrIpv4") or r.inputs.get("referencedSecurityGroupId"),
        )
        for r in rules
    }
    assert seen == {(443, "0.0.0.0/0"), (5432, security_group_id(dev, "database-proxy"))}
    for r in rules:
        assert r.inputs["fromPort"] == r.inputs["toPort"] and r.inputs["ipProtocol"] == "tcp"


# ---- job definition ----------------------------------------------------------------------


def test_job_definition_environment_is_the_contracts_batch_job_environment(dev: Plan) -> None:
    env = {e["name"]: e["value"] for e in container(dev)["environment"]}
    assert env == {
        "JOBSTREAM_CONSUMER": "sqs",
        "JOBSTREAM_STACK": "dev",
        "AWS_DEFAULT_REGION": "us-east-1",
        "JOBSTREAM_ROUTING_PARAMETER": "/jobstream/dev/routing",
        "JOBSTREAM_DB_HOST": dev.outputs["dbProxyEndpoint"],
        "JOBSTREAM_DB_PORT": "5432",
        "JOBSTREAM_DB_NAME": "jobstream",
        "JOBSTREAM_DB_USER": "jobstream_app",
        "JOBSTREAM_DB_SSLMODE": "verify-full",
        "JOBSTREAM_DB_SSLROOTCERT": "system",
    }
    assert env["JOBSTREAM_DB_HOST"].endswith(".rds.amazonaws.com")


def test_job_definition_runs_the_configured_image_with_its_size(dev: Plan) -> None:
    c = container(dev)
    definition = dev.one(JOB_DEFINITION, "batch-ml")
    assert definition.inputs["name"] == "jobstream-dev-ml"
    assert c["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobstream-ml:1.0.0"
    assert {r["type"]: r["value"] for r in c["resourceRequirements"]} == {
        "VCPU": "1",
        "MEMORY": "2048",
    }
    assert definition.inputs["platformCapabilities"] == ["FARGATE"]
    assert c["networkConfiguration"] == {"assignPublicIp": "DISABLED"}
    assert definition.inputs["propagateTags"] is True


def test_job_definition_uses_the_execution_and_job_roles(dev: Plan) -> None:
    c = container(dev)
    assert c["executionRoleArn"] == "arn:aws:iam::123456789012:role/batch-execution"
    assert c["jobRoleArn"] == "arn:aws:iam::123456789012:role/batch-job"


def test_job_attempt_timeout_comes_from_config(plans: PlanSet, dev: Plan) -> None:
    definition = dev.one(JOB_DEFINITION, "batch-ml")
    assert definition.inputs["timeout"] == {"attemptDurationSeconds": 1800}, definition.urn
    other = plans.get("dev", phase=1, overrides={"jobstream:jobTimeoutSeconds": "900"})
    assert other.one(JOB_DEFINITION).inputs["timeout"] == {"attemptDurationSeconds": 900}


@pytest.mark.parametrize(
    ("compute", "host_loss"),
    [("FARGATE", None), ("FARGATE_SPOT", "Your Spot Task was interrupted*"), ("SPOT", "Host EC2*")],
)
def test_retry_strategy_retries_infrastructure_failures_and_exits_on_application_ones(
    plans: PlanSet, compute: str, host_loss: str | None
) -> None:
    """AWS Batch: at most 5 evaluateOnExit entries; a job matching none is retried, so the last
    entry exits on everything. The worker's TEMPORARY exit (75) is the one exit code retried."""
    plan = plans.get("dev", phase=1, overrides={"jobstream:computeType": compute})
    strategy = plan.one(JOB_DEFINITION, "batch-ml").inputs["retryStrategy"]
    assert strategy["attempts"] == 3
    rules = strategy["evaluateOnExits"]
    assert len(rules) <= 5, "AWS Batch accepts at most 5 evaluateOnExit entries"
    *retries, last = rules
    assert last == {"action": "EXIT", "onReason": "*"}, "anything else must fail the job"
    assert {r["action"] for r in retries} == {"RETRY"}
    patterns = {r.get("onStatusReason") or r.get("onReason") for r in retries} - {None}
    assert {"CannotPullContainerError*", "ResourceInitializationError*"} <= patterns
    if host_loss is not None:
        assert host_loss in patterns, f"{compute}: no retry on {host_loss!r}"
    exit_codes = [r["onExitCode"] for r in retries if "onExitCode" in r]
    assert exit_codes == [str(int(WorkerExit.TEMPORARY))], (
        f"only the worker's TEMPORARY exit may be retried, got {exit_codes}"
    )
    for r in rules:
        for key in ("onStatusReason", "onReason", "onExitCode"):
            if key in r:
                assert BATCH_PATTERN.match(r[key]), f"{r[key]!r} is not a valid Batch pattern"


def test_job_logs_go_to_the_batch_log_group_with_retention(dev: Plan) -> None:
    group = dev.one(LOG_GROUP, "batch-jobs")
    assert group.inputs == {"name": "/jobstream/dev/batch", "retentionInDays": 14}, group.urn
    logs = container(dev)["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == "/jobstream/dev/batch"


# ---- the pipe ------------------------------------------------------------------------------


def test_pipe_reads_the_job_queue_one_message_at_a_time(dev: Plan) -> None:
    pipe = dev.one(PIPE, "batch-pipe")
    assert pipe.inputs["name"] == "jobstream-dev-sqs-to-batch"
    assert pipe.inputs["source"] == QUEUE_ARN
    assert pipe.inputs["sourceParameters"]["sqsQueueParameters"]["batchSize"] == 1


def test_pipe_submits_the_job_definition_with_the_message_body(dev: Plan) -> None:
    pipe = dev.one(PIPE, "batch-pipe")
    assert pipe.inputs["target"] == JOB_QUEUE_ARN
    job = pipe.inputs["targetParameters"]["batchJobParameters"]
    assert job["jobDefinition"] == dev.one(JOB_DEFINITION, "batch-ml").inputs["name"]
    env = {e["name"]: e["value"] for e in job["containerOverrides"]["environments"]}
    assert env["JOBSTREAM_JOB_MESSAGE"] == "$.body"
    assert "retryStrategy" not in job, "a pipe retry strategy would replace evaluateOnExit"


def test_pipe_role_reads_only_the_job_queue_and_submits_only_to_this_batch_queue(
    dev: Plan,
) -> None:
    statements = {
        s["Sid"]: s
        for s in json.loads(dev.one(ROLE_POLICY, "batch-pipe").inputs["policy"])["Statement"]
    }
    assert set(statements) == {"ReadJobQueue", "SubmitBatchJob", "WritePipeLogs"}
    read = statements["ReadJobQueue"]
    assert read["Resource"] == QUEUE_ARN
    assert all(a.startswith("sqs:") for a in read["Action"])
    submit = statements["SubmitBatchJob"]
    assert submit["Action"] == "batch:SubmitJob"
    assert sorted(submit["Resource"]) == sorted(
        [JOB_QUEUE_ARN, JOB_DEFINITION_ARN.rsplit(":", 1)[0] + ":*"]
    )


def test_pipe_may_decrypt_the_queue_when_it_has_a_kms_key(plans: PlanSet) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    plan = plans.get("dev", phase=1, overrides={"jobstream:queueKmsKeyArn": key})
    statements = json.loads(plan.one(ROLE_POLICY, "batch-pipe").inputs["policy"])["Statement"]
    (decrypt,) = [s for s in statements if s["Sid"] == "DecryptJobQueue"]
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", key)


# ---- IAM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["batch-execution", "batch-job", "batch-pipe"])
def test_roles_trust_one_service_in_this_account(dev: Plan, role: str) -> None:
    service = {"batch-pipe": "pipes.amazonaws.com"}.get(role, "ecs-tasks.amazonaws.com")
    (statement,) = json.loads(dev.one(ROLE, role).inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": service}, role
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_execution_role_pulls_only_the_images_repository(dev: Plan) -> None:
    statements = {
        s["Sid"]: s
        for s in json.loads(dev.one(ROLE_POLICY, "batch-execution").inputs["policy"])["Statement"]
    }
    assert statements["PullImage"]["Resource"] == (
        "arn:aws:ecr:us-east-1:123456789012:repository/jobstream-ml"
    )
    assert statements["WriteLogs"]["Resource"] == (
        "arn:aws:logs:us-east-1:123456789012:log-group:/jobstream/dev/batch:log-stream:*"
    )


# ecr:GetAuthorizationToken supports no resource-level permissions (AWS accepts only "*").
UNSCOPABLE_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
"""Actions without resource-level permissions (the Service Authorization Reference lists no
resource type for them): ``*`` is the only resource they take."""


@pytest.mark.parametrize("compute", ["FARGATE_SPOT", "SPOT"])
def test_batch_and_database_policies_name_their_actions_and_resources(
    plans: PlanSet, compute: str
) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:computeType": compute})
    checked = 0
    for resource, key, document in iter_policy_documents(plan):
        if not (in_component(plan, resource, BATCH) or in_component(plan, resource, DATABASE)):
            continue
        if key == "assumeRolePolicy":
            continue
        for statement in document["Statement"]:
            if statement.get("Effect") != "Allow":
                continue
            checked += 1
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            where = f"{resource.urn} {statement.get('Sid')}"
            assert all("*" not in a for a in actions), f"{where}: wildcard action {actions}"
            if set(actions) <= UNSCOPABLE_ACTIONS:
                continue
            assert all(r.startswith("arn:aws:") for r in resources), f"{where}: {resources}"
            assert "NotAction" not in statement and "NotResource" not in statement, where
    assert checked >= 9  # proxy (2), connect (1), execution (3), pipe (3), metrics (1)


def test_job_role_may_put_metrics_into_the_jobstream_namespace_only(dev: Plan) -> None:
    (policy,) = [
        r for r in dev.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "batch-job-metrics"
    ]
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Action"] == "cloudwatch:PutMetricData", policy.urn
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Jobstream"}}, (
        f"{policy.urn}: PutMetricData must be limited to the Jobstream namespace"
    )


def test_ecr_repository_arn_is_derived_only_for_private_ecr_images() -> None:
    assert ecr_repository_arn(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/ml@sha256:" + "a" * 64
    ) == ("arn:aws:ecr:eu-west-1:123456789012:repository/team/ml")
    assert ecr_repository_arn("public.ecr.aws/acme/ml:1") is None
    assert ecr_repository_arn("ghcr.io/acme/ml:1") is None


def test_pipe_names_the_job_definition_without_a_revision(dev: Plan) -> None:
    """Issue 12 defect 4. The job definition's ``arn`` ends in ``:<revision>``; a new image
    registers a new revision and, with ``deregister_on_new_revision`` (default true,
    terraform-provider-aws batch_job_definition docs), deregisters the one a pinned pipe
    submits. EventBridge Pipes PipeTargetBatchJobParameters JobDefinition: "This value can be
    one of name, name:revision, or the ARN ... If name is specified without a revision then
    the latest active revision is used." The pipe role's SubmitJob resource stays
    ``job-definition/<name>:*`` (the request ARN carries the revision)."""
    pipe = dev.one(PIPE, "batch-pipe")
    reference = pipe.inputs["targetParameters"]["batchJobParameters"]["jobDefinition"]
    assert reference == "jobstream-dev-ml", f"{pipe.urn}: submits {reference!r}"
    assert ":" not in reference, f"{pipe.urn}: {reference!r} pins a revision"
    submit = {
        s["Sid"]: s
        for s in json.loads(dev.one(ROLE_POLICY, "batch-pipe").inputs["policy"])["Statement"]
    }["SubmitBatchJob"]
    assert (
        "arn:aws:batch:us-east-1:123456789012:job-definition/jobstream-dev-ml:*"
        in submit["Resource"]
    )
