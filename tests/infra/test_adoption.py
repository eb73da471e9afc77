"""Adoption in config and in the offline plan: running resources imported, never re-created.

Pulumi's ``import`` resource option (https://www.pulumi.com/docs/iac/concepts/resources/options/
import/): the resource with that id is read from AWS and put in the stack instead of created;
since pulumi/pulumi#19339 an import whose inputs differ succeeds and then updates the resource
to the program's inputs (pulumi/docs#16580), which is why `jobstream adopt` writes the config
that makes the inputs equal the live settings.

The import ids per type are the provider's (pulumi-aws 7.x, each resource's "Import" section):
an SQS queue by its URL, a Batch compute environment by its name, a job queue and a job
definition by their ARNs; the names are ForceNew (infra/replacement.py cites the provider
source), so an adopted resource keeps its own name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache

import pytest

from infra.config import ConfigError, parse, read_stack_config
from infra.plan import Plan, PlannedResource, run_plan
from infra.plan_diff import diff_plans

ACCOUNT = "210987654321"
QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/legacy-jobs"
DLQ_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/legacy-jobs-dead"
JOB_QUEUE_ARN = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/legacy-ml"
JOB_DEFINITION_ARN = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/legacy-ml-job:12"
EVERYTHING = {
    "jobstream:adoptJobQueueUrl": QUEUE_URL,
    "jobstream:adoptDeadLetterQueueUrl": DLQ_URL,
    "jobstream:adoptBatchComputeEnvironment": "legacy-fargate",
    "jobstream:adoptBatchJobQueueArn": JOB_QUEUE_ARN,
    "jobstream:adoptBatchJobDefinitionArn": JOB_DEFINITION_ARN,
}


def rejected(changes: Mapping[str, str]) -> ConfigError:
    raw = read_stack_config("dev") | dict(changes)
    with pytest.raises(ConfigError) as caught:
        parse(raw, stack="dev")
    return caught.value


@cache
def adopted_plan(phase: int = 1) -> Plan:
    return run_plan("dev", phase=phase, overrides=EVERYTHING)


def resource(plan: Plan, type_: str, name: str) -> PlannedResource:
    return plan.one(type_, name)


# ---- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("adoptJobQueueUrl", "legacy-jobs"),
        ("adoptJobQueueUrl", "https://example.com/210987654321/legacy-jobs"),
        ("adoptDeadLetterQueueUrl", "arn:aws:sqs:us-east-1:210987654321:dlq"),
        ("adoptBatchJobQueueArn", "arn:aws:batch:us-east-1:210987654321:compute-environment/x"),
        ("adoptBatchJobDefinitionArn", "arn:aws:batch:us-east-1:210987654321:job-definition/x"),
        ("adoptBatchComputeEnvironment", "has spaces"),
    ],
)
def test_an_adoption_id_in_the_wrong_form_is_rejected_naming_the_key(key: str, value: str) -> None:
    error = rejected({f"jobstream:{key}": value})
    assert error.keys == [key], str(error)
    assert value in str(error)


def test_an_adopted_queue_of_another_region_is_rejected_naming_the_key_and_the_region() -> None:
    error = rejected({"jobstream:adoptJobQueueUrl": QUEUE_URL.replace("us-east-1", "eu-west-1")})
    assert error.keys == ["adoptJobQueueUrl"]
    assert "eu-west-1" in str(error) and "us-east-1" in str(error)


def test_an_adopted_fifo_queue_is_rejected_because_fifo_forces_a_new_queue() -> None:
    error = rejected({"jobstream:adoptJobQueueUrl": QUEUE_URL + ".fifo"})
    assert error.keys == ["adoptJobQueueUrl"] and "FIFO" in str(error)


def test_the_dead_letter_queue_cannot_be_the_job_queue() -> None:
    error = rejected(
        {"jobstream:adoptJobQueueUrl": QUEUE_URL, "jobstream:adoptDeadLetterQueueUrl": QUEUE_URL}
    )
    assert error.keys == ["adoptDeadLetterQueueUrl"]


def test_adopted_resources_of_two_accounts_are_rejected() -> None:
    error = rejected(
        {
            "jobstream:adoptJobQueueUrl": QUEUE_URL,
            "jobstream:adoptBatchJobQueueArn": JOB_QUEUE_ARN.replace(ACCOUNT, "111122223333"),
        }
    )
    assert error.keys == ["adoptBatchJobQueueArn"] and "account" in str(error)


def test_legacy_queue_endpoints_are_accepted() -> None:
    for url in (
        f"https://queue.amazonaws.com/{ACCOUNT}/legacy-jobs",
        f"https://us-east-1.queue.amazonaws.com/{ACCOUNT}/legacy-jobs",
    ):
        cfg = parse(read_stack_config("dev") | {"jobstream:adoptJobQueueUrl": url}, stack="dev")
        assert cfg.names.job_queue == "legacy-jobs"


def test_adopted_resources_lend_their_names_to_the_stack() -> None:
    cfg = parse(read_stack_config("dev") | EVERYTHING, stack="dev")
    names = cfg.names
    assert (names.job_queue, names.dead_letter_queue) == ("legacy-jobs", "legacy-jobs-dead")
    assert names.batch_job_queue == "legacy-ml"
    assert names.batch_job_definition == "legacy-ml-job"
    assert names.batch_compute_environment == "legacy-fargate"
    assert names.failed_jobs_queue == "jobstream-dev-failed-jobs"  # not adopted: derived


# ---- the plan ---------------------------------------------------------------------------------


def test_the_plan_gives_every_resource_an_import_id_null_unless_adopted() -> None:
    plan = run_plan("dev", phase=1)
    document = plan.to_json()
    assert all("importId" in r for r in document["resources"])
    assert [r["urn"] for r in document["resources"] if r["importId"] is not None] == []


@pytest.mark.parametrize(
    ("type_", "name", "import_id"),
    [
        ("aws:sqs/queue:Queue", "jobs", QUEUE_URL),
        ("aws:sqs/queue:Queue", "jobs-dlq", DLQ_URL),
        ("aws:batch/computeEnvironment:ComputeEnvironment", "batch-compute", "legacy-fargate"),
        ("aws:batch/jobQueue:JobQueue", "batch-queue", JOB_QUEUE_ARN),
        ("aws:batch/jobDefinition:JobDefinition", "batch-ml", JOB_DEFINITION_ARN),
    ],
)
def test_an_adopted_resource_is_imported_under_its_own_name(
    type_: str, name: str, import_id: str
) -> None:
    r = resource(adopted_plan(), type_, name)
    assert r.import_id == import_id, f"{r.urn}: import id {r.import_id!r}, expected {import_id!r}"
    expected_name = import_id.rsplit("/", 1)[-1].split(":")[0]
    assert r.inputs["name"] == expected_name, f"{r.urn}: a renamed import would be replaced"
    assert "namePrefix" not in r.inputs, f"{r.urn}: a name prefix would replace the import"


def test_only_the_adopted_resources_are_imported() -> None:
    imported = sorted(r.name for r in adopted_plan().resources if r.import_id)
    assert imported == ["batch-compute", "batch-ml", "batch-queue", "jobs", "jobs-dlq"]


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        ("aws:sqs/queue:Queue", "jobs"),
        ("aws:sqs/queue:Queue", "jobs-dlq"),
        ("aws:batch/jobQueue:JobQueue", "batch-queue"),
    ],
)
def test_an_adopted_stateful_resource_is_protected_from_the_first_up(type_: str, name: str) -> None:
    r = resource(adopted_plan(), type_, name)
    assert r.protect, f"{r.urn}: adopted resources holding jobs must be protected (dev default off)"


def test_the_stack_wires_the_adopted_queue_by_its_own_url_and_arn() -> None:
    plan = adopted_plan()
    redrive = resource(plan, "aws:sqs/redrivePolicy:RedrivePolicy", "jobs")
    assert redrive.inputs["queueUrl"] == QUEUE_URL
    policy = json.loads(redrive.inputs["redrivePolicy"])
    assert policy["deadLetterTargetArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:legacy-jobs-dead"


def test_a_phase_diff_is_the_same_with_or_without_adoption() -> None:
    def keys(old: Plan, new: Plan) -> list[tuple[str, str]]:
        diff = diff_plans(old, new)
        return sorted(
            [("add", r.name) for r in diff.added]
            + [("remove", r.name) for r in diff.removed]
            + [("change", c.urn.rsplit("::", 1)[-1]) for c in diff.changed]
        )

    plain = keys(run_plan("dev", phase=1), run_plan("dev", phase=2))
    adopted = keys(adopted_plan(1), adopted_plan(2))
    assert adopted == plain
