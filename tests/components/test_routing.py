"""The routing parameter: the JSON contract per phase, and who may read it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.mocks import ACCOUNT_ID
from infra.plan import Plan, PlanSet
from infra.plan_views import iter_policy_documents
from jobstream.contract.phases import PHASES, ResourceGroup, phase
from jobstream.contract.routing import Routing

PARAMETER = "aws:ssm/parameter:Parameter"
CONTRACT_KEYS = {
    "version",
    "stack",
    "phase",
    "publish_targets",
    "consumer_modes",
    "queue_url",
    "dlq_url",
    "topic",
    "dead_letter_topic",
    "bootstrap_brokers",
    "consumer_group",
    "kafka_auth",
}
STACK_PHASES = [(s, n) for s in ("dev", "prod") for n in PHASES]


def document(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.one(PARAMETER).inputs["insecureValue"])


def parameter_arn(stack: str) -> str:
    return f"arn:aws:ssm:us-east-1:{ACCOUNT_ID}:parameter/jobstream/{stack}/routing"


@pytest.mark.parametrize(("stack", "n"), STACK_PHASES)
def test_one_string_parameter_per_stack_in_every_phase(plans: PlanSet, stack: str, n: int) -> None:
    parameter = plans.get(stack, n).one(PARAMETER)
    assert parameter.inputs["name"] == f"/jobstream/{stack}/routing"
    assert parameter.inputs["type"] == "String"
    assert plans.get(stack, n).outputs["routingParameter"] == f"/jobstream/{stack}/routing"


@pytest.mark.parametrize(("stack", "n"), STACK_PHASES)
def test_value_is_the_routing_contract_the_library_parses(
    plans: PlanSet, stack: str, n: int
) -> None:
    plan = plans.get(stack, n)
    doc = document(plan)
    assert set(doc) == CONTRACT_KEYS
    parsed = Routing.from_dict(doc)  # raises on any contract violation
    p = phase(n)
    assert (doc["version"], doc["stack"], doc["phase"]) == (1, stack, n)
    assert parsed.publish_targets == tuple(r.value for r in p.publish_targets)
    assert doc["consumer_modes"] == {r.value: m.value for r, m in p.consumer_modes.items()}


@pytest.mark.parametrize(("stack", "n"), STACK_PHASES)
def test_queue_fields_are_set_exactly_while_the_queue_exists(
    plans: PlanSet, stack: str, n: int
) -> None:
    plan, doc = plans.get(stack, n), document(plans.get(stack, n))
    if phase(n).has(ResourceGroup.JOB_QUEUE):
        assert (doc["queue_url"], doc["dlq_url"]) == (
            plan.outputs["queueUrl"],
            plan.outputs["dlqUrl"],
        )
    else:
        assert (doc["queue_url"], doc["dlq_url"]) == (None, None)


@pytest.mark.parametrize(("stack", "n"), STACK_PHASES)
def test_kafka_fields_are_set_exactly_while_the_cluster_exists(
    plans: PlanSet, stack: str, n: int
) -> None:
    plan, doc = plans.get(stack, n), document(plans.get(stack, n))
    kafka = ("topic", "dead_letter_topic", "bootstrap_brokers", "consumer_group", "kafka_auth")
    if phase(n).has(ResourceGroup.KAFKA):
        assert [doc[k] for k in kafka] == [
            "jobstream.jobs",
            "jobstream.jobs.dlq",
            plan.outputs["bootstrapBrokers"],
            "jobstream-ml",
            "iam",
        ]
        assert doc["bootstrap_brokers"].count(":9098") == plan.config.kafka.broker_count
    else:
        assert [doc[k] for k in kafka] == [None] * len(kafka)


@pytest.mark.parametrize(("stack", "n"), STACK_PHASES)
def test_only_the_batch_job_role_the_ecs_task_role_and_the_producer_policy_may_read_it(
    plans: PlanSet, stack: str, n: int
) -> None:
    """Inside the stack only the two consumer roles read the parameter; the producers (outside
    the stack) read it through the one managed policy their owners attach, which no role of
    this stack has."""
    plan = plans.get(stack, n)
    readers: dict[str, list[str]] = {}
    for resource, _key, doc in iter_policy_documents(plan):
        body = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
        for st in body:
            resources = st.get("Resource", [])
            resources = resources if isinstance(resources, list) else [resources]
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            ssm = any(a.startswith("ssm:") or a == "*" for a in actions)
            if parameter_arn(stack) in resources or (ssm and "*" in resources):
                assert actions == ["ssm:GetParameter"], f"{resource.urn} grants {actions}"
                readers.setdefault(resource.inputs.get("role", resource.urn), []).append(
                    resource.urn
                )
    producer_policy = "urn:pulumi:{0}::jobstream::jobstream:producers:ProducerAccess$aws:iam/policy:Policy::producers"
    expected = {producer_policy.format(stack)}
    attachments = plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert not [a.urn for a in attachments if "producer" in str(a.inputs.get("policyArn"))]
    if phase(n).has(ResourceGroup.BATCH):
        expected.add("batch-job")
    if phase(n).has(ResourceGroup.CONSUMER_SERVICE):
        expected.add("consumer-task")
    assert set(readers) == expected, f"phase {n}: readers {readers}"
