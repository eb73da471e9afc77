"""What the rehearsal takes from the offline plan of a stack: the resources it creates on the
local servers and the settings it runs with, so that what is rehearsed is what would be deployed.

``StackModel.from_plans`` reads, per phase the rehearsal visits, the routing document the stack
would write; and from any plan with Batch: the job queue's and DLQ's attributes, the redrive
policy's ``maxReceiveCount``, the failed-jobs capture (queue, rule pattern, target), the job
definition's environment, attempts and ``evaluateOnExit`` rules, the pipe's container overrides
and batch size, the compute environment's vCPU ceiling; from a plan with Kafka: the topics
(partitions, the dead-letter topic) and the ECS task definition's environment and desired count.
A config override (``--set``) reaches the rehearsal through the same plans.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.plan import Plan, PlannedResource, run_plan
from jobstream.contract.phases import CLEANUP_PHASE, ResourceGroup, phase
from jobstream.contract.routing import Routing

QUEUE = "aws:sqs/queue:Queue"
REDRIVE = "aws:sqs/redrivePolicy:RedrivePolicy"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
COMPUTE = "aws:batch/computeEnvironment:ComputeEnvironment"
JOB_QUEUE = "aws:batch/jobQueue:JobQueue"
PIPE = "aws:pipes/pipe:Pipe"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
PARAMETER = "aws:ssm/parameter:Parameter"
TOPIC_TYPES = ("aws:msk/topic:Topic", "kafka:index/topic:Topic")
FAILED_JOBS = "jobstream:failedjobs:FailedJobsCapture"


class StackModelError(ValueError):
    """The plan lacks something the rehearsal needs (for example a phase without Batch)."""


@dataclass(frozen=True)
class QueueSpec:
    name: str
    attributes: Mapping[str, str]
    """SQS attributes as CreateQueue takes them (strings)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


@dataclass(frozen=True)
class RetryRule:
    """One ``evaluateOnExit`` entry (AWS Batch: every condition given must match; a pattern may
    end with ``*``; the first matching entry decides)."""

    action: str
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None

    def matches(self, *, status_reason: str, reason: str, exit_code: int | None) -> bool:
        conditions = (
            (self.on_status_reason, status_reason),
            (self.on_reason, reason),
            (self.on_exit_code, "" if exit_code is None else str(exit_code)),
        )
        return all(p is None or _glob(p, value) for p, value in conditions)


def _glob(pattern: str, value: str) -> bool:
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


@dataclass(frozen=True)
class RetryStrategy:
    attempts: int
    rules: tuple[RetryRule, ...]

    def retries(self, *, status_reason: str, reason: str, exit_code: int | None) -> bool:
        """What AWS Batch does after a failed attempt: the first matching rule's action; a
        failure that matches no rule is retried (AWS Batch API reference, RetryStrategy)."""
        for rule in self.rules:
            if rule.matches(status_reason=status_reason, reason=reason, exit_code=exit_code):
                return rule.action.upper() == "RETRY"
        return True


@dataclass(frozen=True)
class StackModel:
    stack: str
    region: str
    routing_parameter: str
    routings: Mapping[int, Routing]
    """The routing document of each visited phase, as the plan writes it."""
    job_queue: QueueSpec
    dead_letter_queue: QueueSpec
    max_receive_count: int
    failed_jobs_queue: QueueSpec
    failed_jobs_rule: str
    failed_jobs_pattern: Mapping[str, Any]
    batch_job_queue: str
    batch_job_queue_arn: str
    job_definition: str
    job_environment: Mapping[str, str]
    pipe_overrides: Mapping[str, str]
    pipe_batch_size: int
    pipe_job_name: str
    """The name the pipe gives each job it submits."""
    retry: RetryStrategy
    job_timeout_seconds: int
    max_concurrent_jobs: int
    compute_type: str
    topics: tuple[TopicSpec, ...]
    service_environment: Mapping[str, str]
    service_desired_count: int
    db_proxy_endpoint: str
    config: Any = None
    """The stack's parsed config (``infra.config.StackConfig``): the gates read it."""
    placeholders: Mapping[str, str] = field(default_factory=dict)
    """Values of the plan that name a place (the proxy endpoint, queue URLs, brokers)."""

    @property
    def jobs_topic(self) -> TopicSpec:
        routing = next(r for r in self.routings.values() if r.topic is not None)
        return next(t for t in self.topics if t.name == routing.topic)

    @classmethod
    def from_stack(
        cls, stack: str, phases: Sequence[int], overrides: Mapping[str, str] | None = None
    ) -> StackModel:
        visited = sorted(set(phases))
        if CLEANUP_PHASE in visited:
            raise StackModelError("the rehearsal does not visit phase 5 (it deletes the SQS path)")
        plans = {n: run_plan(stack, phase=n, overrides=overrides) for n in visited}
        return cls.from_plans(plans)

    @classmethod
    def from_plans(cls, plans: Mapping[int, Plan]) -> StackModel:
        with_batch = [p for n, p in sorted(plans.items()) if phase(n).has(ResourceGroup.BATCH)]
        with_service = [
            p for n, p in sorted(plans.items()) if phase(n).has(ResourceGroup.CONSUMER_SERVICE)
        ]
        with_kafka = [p for n, p in sorted(plans.items()) if phase(n).has(ResourceGroup.KAFKA)]
        if not with_batch or not with_service or not with_kafka:
            raise StackModelError(
                "the rehearsal needs a phase with Batch, one with Kafka and one with the consumer "
                f"service among the visited phases {sorted(plans)}"
            )
        batch, service, kafka = with_batch[0], with_service[0], with_kafka[0]
        queues = {r.name: r for r in batch.of_type(QUEUE)}
        (redrive,) = batch.of_type(REDRIVE)
        (capture_rule,) = [r for r in batch.of_type(RULE) if _in(batch, r, FAILED_JOBS)]
        definition = batch.one(JOB_DEFINITION)
        container = json.loads(definition.inputs["containerProperties"])
        pipe = batch.one(PIPE)
        target = pipe.inputs["targetParameters"]["batchJobParameters"]
        compute = batch.one(COMPUTE).inputs["computeResources"]
        vcpu = next(
            float(r["value"]) for r in container["resourceRequirements"] if r["type"] == "VCPU"
        )
        strategy = definition.inputs["retryStrategy"]
        (task,) = json.loads(service.one(TASK_DEFINITION).inputs["containerDefinitions"])
        topics = tuple(
            TopicSpec(
                t.inputs["name"],
                int(t.inputs.get("partitionCount") or t.inputs.get("partitions") or 1),
            )
            for type_ in TOPIC_TYPES
            for t in kafka.of_type(type_)
        )
        job_queue = batch.one(JOB_QUEUE)
        routings = {
            n: Routing.from_json(p.one(PARAMETER).inputs["insecureValue"])
            for n, p in sorted(plans.items())
        }
        return cls(
            stack=batch.stack,
            region=batch.config.region,
            routing_parameter=batch.outputs["routingParameter"],
            routings=routings,
            job_queue=_queue(queues["jobs"]),
            dead_letter_queue=_queue(queues["jobs-dlq"]),
            max_receive_count=int(json.loads(redrive.inputs["redrivePolicy"])["maxReceiveCount"]),
            failed_jobs_queue=_queue(queues["failed-jobs"]),
            failed_jobs_rule=capture_rule.inputs["name"],
            failed_jobs_pattern=json.loads(capture_rule.inputs["eventPattern"]),
            batch_job_queue=job_queue.inputs["name"],
            batch_job_queue_arn=batch.outputs["batchJobQueueArn"],
            job_definition=definition.inputs["name"],
            job_environment={e["name"]: e["value"] for e in container["environment"]},
            pipe_overrides={
                e["name"]: e["value"] for e in target["containerOverrides"]["environments"]
            },
            pipe_batch_size=int(
                pipe.inputs["sourceParameters"]["sqsQueueParameters"].get("batchSize", 1)
            ),
            pipe_job_name=target["jobName"],
            retry=RetryStrategy(
                attempts=int(strategy["attempts"]),
                rules=tuple(
                    RetryRule(
                        action=e["action"],
                        on_status_reason=e.get("onStatusReason"),
                        on_reason=e.get("onReason"),
                        on_exit_code=e.get("onExitCode"),
                    )
                    for e in strategy.get("evaluateOnExits", [])
                ),
            ),
            job_timeout_seconds=int(definition.inputs["timeout"]["attemptDurationSeconds"]),
            max_concurrent_jobs=max(1, int(compute["maxVcpus"] // vcpu)),
            compute_type=str(compute["type"]),
            topics=topics,
            service_environment={e["name"]: e["value"] for e in task["environment"]},
            service_desired_count=int(service.one(SERVICE).inputs["desiredCount"]),
            db_proxy_endpoint=batch.outputs["dbProxyEndpoint"],
            config=batch.config,
        )


def _in(plan: Plan, resource: PlannedResource, component_type: str) -> bool:
    component = plan.component_of(resource)
    return component is not None and component.type == component_type


def _queue(resource: PlannedResource) -> QueueSpec:
    names = {
        "visibilityTimeoutSeconds": "VisibilityTimeout",
        "messageRetentionSeconds": "MessageRetentionPeriod",
        "receiveWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
        "delaySeconds": "DelaySeconds",
        "maxMessageSize": "MaximumMessageSize",
    }
    attributes = {
        sqs: str(resource.inputs[key]) for key, sqs in names.items() if key in resource.inputs
    }
    if resource.inputs.get("sqsManagedSseEnabled"):
        attributes["SqsManagedSseEnabled"] = "true"
    return QueueSpec(resource.inputs["name"], attributes)
