"""``jobstream adopt`` against moto's server: a running queue + DLQ with non-default settings
and a running AWS Batch setup become config for which the offline plan's inputs equal the live
settings, and the plan imports them by their ids.

moto keeps the SQS and Batch control-plane records that adopt reads (GetQueueAttributes,
DescribeComputeEnvironments, DescribeJobQueues, DescribeJobDefinitions); it does not run Batch
jobs, which adopt never needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import parse, read_stack_config
from infra.plan import Plan, run_plan
from jobstream.messaging import aws
from tests.conftest import ROOT

pytestmark = pytest.mark.moto_server

STACK = "dev"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
SQS_ENDPOINT = f"https://sqs.{REGION}.amazonaws.com"
QUEUE_SETTINGS = {
    "VisibilityTimeout": "2400",
    "MessageRetentionPeriod": "172800",
    "ReceiveMessageWaitTimeSeconds": "20",
    "SqsManagedSseEnabled": "true",
}
DLQ_SETTINGS = {
    "VisibilityTimeout": "2400",
    "MessageRetentionPeriod": "864000",
    "ReceiveMessageWaitTimeSeconds": "20",
    "SqsManagedSseEnabled": "true",
}
MAX_RECEIVE_COUNT = 4
IMAGE = "210987654321.dkr.ecr.us-east-1.amazonaws.com/legacy-ml:7.3"


class Platform:
    """The phase-1 platform a team runs today, on moto's server, under its own names."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue_url = ""
        self.dlq_url = ""
        self.job_queue_arn = ""
        self.job_definition_arn = ""

    def client(self, service: str) -> Any:
        return aws.client(service, region=REGION, endpoint_url=self.url, max_attempts=2)

    def queues(self, **extra: str) -> None:
        sqs = self.client("sqs")
        self.dlq_url = sqs.create_queue(QueueName="legacy-dead", Attributes=DLQ_SETTINGS)[
            "QueueUrl"
        ]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        self.queue_url = sqs.create_queue(
            QueueName="legacy-jobs",
            Attributes=QUEUE_SETTINGS | {"RedrivePolicy": json.dumps(redrive)} | extra,
        )["QueueUrl"]

    def batch(self, environment_type: str = "MANAGED") -> None:
        ec2, iam, batch = self.client("ec2"), self.client("iam"), self.client("batch")
        vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="legacy", Description="x", VpcId=vpc)["GroupId"]
        role = iam.create_role(
            RoleName="aws-service-role-for-batch-stand-in", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        environment = batch.create_compute_environment(
            computeEnvironmentName="legacy-fargate",
            type=environment_type,
            state="ENABLED",
            computeResources={
                "type": "FARGATE",
                "maxvCpus": 32,
                "subnets": [subnet],
                "securityGroupIds": [group],
            },
            serviceRole=role,
        )["computeEnvironmentArn"]
        self.job_queue_arn = batch.create_job_queue(
            jobQueueName="legacy-ml",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]
        self.job_definition_arn = batch.register_job_definition(
            jobDefinitionName="legacy-ml-job",
            type="container",
            platformCapabilities=["FARGATE"],
            containerProperties={
                "image": IMAGE,
                "resourceRequirements": [
                    {"type": "VCPU", "value": "2"},
                    {"type": "MEMORY", "value": "4096"},
                ],
                "executionRoleArn": role,
            },
            retryStrategy={"attempts": 2},
            timeout={"attemptDurationSeconds": 1200},
        )["jobDefinitionArn"]


@pytest.fixture
def platform(aws_env: None, moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Platform:
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    return Platform(moto_server.url)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's Pulumi.yaml and the dev stack at phase 1 (what adopters run),
    with a comment to keep; the commands run from it."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    text = text.replace("jobstream:phase: 3", "jobstream:phase: 1  # where the team is today")
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def adopt(run: Any, *extra: str, batch: bool = True) -> Any:
    """``jobstream adopt`` naming the team's resources (their names are not the stack's)."""
    named = ["--job-queue", "legacy-jobs"]
    if batch:
        named += ["--batch-job-queue", "legacy-ml", "--job-definition", "legacy-ml-job"]
    return run("adopt", "--stack", STACK, *named, *extra)


def plan_of(project: Path) -> Plan:
    return run_plan(STACK, directory=project)


def test_the_written_config_makes_the_plan_inputs_equal_the_live_settings(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    platform.batch()
    result = adopt(run, "--write", "--json")
    assert result.code == 0, result.err + result.out
    assert result.json()["written"] is True
    plan = plan_of(project)

    queue = plan.one("aws:sqs/queue:Queue", "jobs").inputs
    assert queue["name"] == "legacy-jobs"
    assert queue["visibilityTimeoutSeconds"] == int(QUEUE_SETTINGS["VisibilityTimeout"])
    assert queue["messageRetentionSeconds"] == int(QUEUE_SETTINGS["MessageRetentionPeriod"])
    assert queue["receiveWaitTimeSeconds"] == 20 and queue["sqsManagedSseEnabled"] is True
    dlq = plan.one("aws:sqs/queue:Queue", "jobs-dlq").inputs
    assert dlq["name"] == "legacy-dead"
    assert dlq["messageRetentionSeconds"] == int(DLQ_SETTINGS["MessageRetentionPeriod"])
    redrive = json.loads(
        plan.one("aws:sqs/redrivePolicy:RedrivePolicy", "jobs").inputs["redrivePolicy"]
    )
    assert redrive["maxReceiveCount"] == MAX_RECEIVE_COUNT
    assert redrive["deadLetterTargetArn"].endswith(":legacy-dead")

    environment = plan.one("aws:batch/computeEnvironment:ComputeEnvironment", "batch-compute")
    assert environment.inputs["name"] == "legacy-fargate"
    assert environment.inputs["computeResources"]["type"] == "FARGATE"
    assert environment.inputs["computeResources"]["maxVcpus"] == 32
    job_queue = plan.one("aws:batch/jobQueue:JobQueue", "batch-queue").inputs
    assert (job_queue["name"], job_queue["state"], job_queue["priority"]) == (
        "legacy-ml",
        "ENABLED",
        1,
    )
    definition = plan.one("aws:batch/jobDefinition:JobDefinition", "batch-ml").inputs
    container = json.loads(definition["containerProperties"])
    assert container["image"] == IMAGE
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {
        "VCPU": "2",
        "MEMORY": "4096",
    }
    assert definition["timeout"]["attemptDurationSeconds"] == 1200
    assert definition["retryStrategy"]["attempts"] == 2


def test_the_plan_imports_each_adopted_resource_by_its_live_id(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    platform.batch()
    assert adopt(run, "--write").code == 0
    imported = {(r.type, r.name): r.import_id for r in plan_of(project).resources if r.import_id}
    assert imported == {
        # the queue's regional URL, from its ARN (moto's server answers on its own address)
        ("aws:sqs/queue:Queue", "jobs"): f"{SQS_ENDPOINT}/{ACCOUNT}/legacy-jobs",
        ("aws:sqs/queue:Queue", "jobs-dlq"): f"{SQS_ENDPOINT}/{ACCOUNT}/legacy-dead",
        ("aws:batch/computeEnvironment:ComputeEnvironment", "batch-compute"): "legacy-fargate",
        ("aws:batch/jobQueue:JobQueue", "batch-queue"): platform.job_queue_arn,
        ("aws:batch/jobDefinition:JobDefinition", "batch-ml"): platform.job_definition_arn,
    }


def test_writing_keeps_the_stack_files_comments_and_order(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    before = (project / "Pulumi.dev.yaml").read_text()
    assert adopt(run, "--write", batch=False).code == 0
    after = (project / "Pulumi.dev.yaml").read_text()
    assert after.startswith(before.splitlines()[0] + "\n"), "the heading comment was lost"
    assert "jobstream:phase: 1  # where the team is today" in after
    keys = list(yaml.safe_load(after)["config"])
    assert keys[: len(yaml.safe_load(before)["config"])] == list(yaml.safe_load(before)["config"])
    written = yaml.safe_load(after)["config"]["jobstream:adoptJobQueueUrl"]
    assert written == f"{SQS_ENDPOINT}/{ACCOUNT}/legacy-jobs"


def test_a_second_run_finds_the_ids_in_config_and_changes_nothing(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    platform.batch()
    assert adopt(run, "--write").code == 0
    again = run("adopt", "--stack", STACK, "--write", "--json")
    assert again.code == 0, again.err
    document = again.json()
    assert document["written"] is False
    assert {a["foundBy"] for a in document["adopted"]} >= {"stack config"}


def test_a_setting_config_cannot_express_is_listed_with_what_the_first_up_does(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues(DelaySeconds="5")
    result = adopt(run, "--json", batch=False)
    differences = [
        (d["input"], d["live"], d["stack"], d["effect"]) for d in result.json()["differences"]
    ]
    assert ("delaySeconds", 5, 0, "update") in differences, differences


def test_the_stacks_policies_overwriting_the_queues_own_are_listed(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    result = adopt(run, "--json", batch=False)
    inputs = {d["input"] for d in result.json()["differences"] if d["effect"] == "overwrite"}
    assert "Policy (QueuePolicy)" in inputs  # the live queue has none; the stack adds its own


def test_piped_differences_show_long_values_whole(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    policies = [
        d["stack"]
        for d in adopt(run, "--json", batch=False).json()["differences"]
        if d["input"] == "Policy (QueuePolicy)"
    ]
    text = policies[0] if isinstance(policies[0], str) else json.dumps(policies[0], sort_keys=True)
    assert len(text) > 100, "the test needs a value longer than a terminal's cut"
    piped = adopt(run, batch=False).out
    assert "(--json shows all)" not in piped and text in piped


def test_live_settings_that_make_an_invalid_config_are_reported_and_nothing_written(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues(VisibilityTimeout="600")  # shorter than the stack's 1800 s job timeout
    before = (project / "Pulumi.dev.yaml").read_text()
    result = adopt(run, "--write", "--json", batch=False)
    assert result.code == 1
    problems = result.json()["problems"]
    assert any("queueVisibilityTimeoutSeconds" in p for p in problems), problems
    assert (project / "Pulumi.dev.yaml").read_text() == before


def test_a_setting_whose_change_replaces_a_resource_blocks_the_write(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    platform.batch(environment_type="UNMANAGED")  # the stack's is MANAGED: a replacement
    before = (project / "Pulumi.dev.yaml").read_text()
    result = adopt(run, "--write", "--json")
    document = result.json()
    assert result.code == 1 and document["blockers"] >= 1, document["differences"]
    assert document["exit_code"] == 1, "the JSON says the exit code, as every command's does"
    assert not document["written"], "wrote a config whose first `pulumi up` replaces a resource"
    assert (project / "Pulumi.dev.yaml").read_text() == before
    table = adopt(run)
    assert "Not written" in table.out and "Run again with --write" not in table.out


def test_a_command_line_id_contradicting_the_stack_config_is_rejected_naming_the_key(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    assert adopt(run, "--write", batch=False).code == 0
    result = run("adopt", "--stack", STACK, "--job-queue", "another-queue")
    assert result.code == 2
    assert "jobstream:adoptJobQueueUrl" in result.err


def test_an_adoption_id_of_another_region_in_config_is_rejected_naming_the_key(
    platform: Platform, project: Path, run: Any
) -> None:
    path = project / "Pulumi.dev.yaml"
    path.write_text(
        path.read_text()
        + "  jobstream:adoptJobQueueUrl: https://sqs.eu-west-1.amazonaws.com/123456789012/jobs\n"
    )
    result = run("adopt", "--stack", STACK)
    assert result.code == 2
    assert "jobstream:adoptJobQueueUrl" in result.err and "eu-west-1" in result.err


def test_nothing_to_adopt_exits_not_found(platform: Platform, project: Path, run: Any) -> None:
    result = run("adopt", "--stack", STACK)
    assert result.code == 6, result.err


def test_the_adopted_config_parses_with_the_adopted_names(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    platform.batch()
    assert adopt(run, "--write").code == 0
    cfg = parse(read_stack_config(STACK, project), stack=STACK)
    assert (cfg.names.job_queue, cfg.names.dead_letter_queue) == ("legacy-jobs", "legacy-dead")
    assert cfg.names.batch_job_queue == "legacy-ml"


def test_what_consumes_the_queue_today_is_named_so_it_can_be_stopped(
    platform: Platform, project: Path, run: Any
) -> None:
    platform.queues()
    sqs = platform.client("sqs")
    queue_arn = sqs.get_queue_attributes(QueueUrl=platform.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    role = platform.client("iam").create_role(RoleName="legacy-pipe", AssumeRolePolicyDocument="{}")
    platform.client("pipes").create_pipe(
        Name="legacy-submitter",
        Source=queue_arn,
        Target="arn:aws:batch:us-east-1:123456789012:job-queue/legacy-ml",
        RoleArn=role["Role"]["Arn"],
    )
    document = adopt(run, "--json", batch=False).json()
    assert [c for c in document["consumers"] if "legacy-submitter" in c], document["consumers"]
    assert any("stop it when the stack's pipe starts" in n for n in document["notes"])
