"""Reading the running SQS queues and AWS Batch setup with boto3, and deriving the config values
that make the stack's inputs equal them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from infra import config as config_module
from infra.config import NAMESPACE
from jobstream.contract.names import Names
from ops.adoption.model import (
    BATCH_CE,
    BATCH_DEFINITION,
    BATCH_QUEUE,
    COMPUTE_TYPES,
    SERVICE_LINKED_BATCH_ROLE,
    SQS_QUEUE,
    Adopted,
    Adoption,
    Live,
)
from ops.aws_clients import (
    AccessDeniedError,
    Aws,
    NotFoundError,
    ResourceMissingError,
    UsageError,
    aws_call,
    page_items,
)
from ops.stack_file import Value

T = TypeVar("T")


def _queue_url(aws: Aws, name_or_url: str) -> str:
    if name_or_url.startswith("https://"):
        return name_or_url
    with aws_call("sqs:GetQueueUrl"):
        return str(aws.client("sqs").get_queue_url(QueueName=name_or_url)["QueueUrl"])


def _queue_attributes(aws: Aws, url: str) -> dict[str, str]:
    with aws_call("sqs:GetQueueAttributes"):
        return dict(
            aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                "Attributes"
            ]
        )


def canonical_queue_url(queue_arn: str) -> str:
    """The queue's URL on its regional endpoint, from its ARN: the import id the stack writes,
    whichever endpoint (legacy, VPC endpoint, a local server) answered the reads."""
    _arn, partition, _sqs, region, account, name = queue_arn.split(":", 5)
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def _queue_inputs(url: str, attrs: Mapping[str, str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "name": url.rsplit("/", 1)[-1],
        "messageRetentionSeconds": int(attrs.get("MessageRetentionPeriod", 345_600)),
        "visibilityTimeoutSeconds": int(attrs.get("VisibilityTimeout", 30)),
        "receiveWaitTimeSeconds": int(attrs.get("ReceiveMessageWaitTimeSeconds", 0)),
        "delaySeconds": int(attrs.get("DelaySeconds", 0)),
        "maxMessageSize": int(attrs.get("MaximumMessageSize", 262_144)),
        "fifoQueue": attrs.get("FifoQueue", "false") == "true",
        "sqsManagedSseEnabled": attrs.get("SqsManagedSseEnabled", "false") == "true",
    }
    if attrs.get("KmsMasterKeyId"):
        inputs["kmsMasterKeyId"] = attrs["KmsMasterKeyId"]
        inputs["kmsDataKeyReusePeriodSeconds"] = int(attrs.get("KmsDataKeyReusePeriodSeconds", 300))
    return inputs


def _key_arn(aws: Aws, key_id: str) -> str | None:
    """The ARN of the KMS key an SQS queue names by id, alias or ARN (None if unreadable)."""
    if key_id.startswith("arn:") and ":key/" in key_id:
        return key_id
    try:
        with aws_call("kms:DescribeKey"):
            return str(aws.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])
    except (NotFoundError, ResourceMissingError):
        return None


def _one(items: list[dict[str, Any]], what: str, ident: str) -> dict[str, Any]:
    if not items:
        raise ResourceMissingError(f"{what} {ident} does not exist")
    return items[0]


def _batch_job_queue(aws: Aws, name_or_arn: str) -> dict[str, Any]:
    with aws_call("batch:DescribeJobQueues"):
        found = aws.client("batch").describe_job_queues(jobQueues=[name_or_arn])["jobQueues"]
    return _one(found, "Batch job queue", name_or_arn)


def _compute_environment(aws: Aws, name_or_arn: str) -> dict[str, Any]:
    with aws_call("batch:DescribeComputeEnvironments"):
        found = aws.client("batch").describe_compute_environments(
            computeEnvironments=[name_or_arn]
        )["computeEnvironments"]
    return _one(found, "Batch compute environment", name_or_arn)


def _job_definition(aws: Aws, name_or_arn: str) -> dict[str, Any]:
    batch = aws.client("batch")
    asked: dict[str, Any] = (
        {"jobDefinitions": [name_or_arn]}
        if name_or_arn.startswith("arn:")
        else {"jobDefinitionName": name_or_arn, "status": "ACTIVE"}
    )
    # Every page: a definition revised often has more active revisions than one answer holds
    # (100), and the newest may be on any page.
    found = sorted(
        page_items(
            batch,
            "describe_job_definitions",
            "batch:DescribeJobDefinitions",
            "jobDefinitions",
            **asked,
        ),
        key=lambda d: int(d.get("revision", 0)),
        reverse=True,
    )
    return _one(found, "active Batch job definition", name_or_arn)


def _found(
    given: str | None, configured: str | None, *, option: str, key: str
) -> tuple[str | None, str]:
    """The id to read: the command line's, the stack config's, or None (discover it). Both
    given and naming different resources is a contradiction, not a choice."""
    if given and configured and not _names_same(given, configured):
        raise UsageError(
            f"{option} {given} contradicts {NAMESPACE}:{key} = {configured} in the stack file: "
            "the stack already adopts another resource",
            hint=f"drop {option}, or change {NAMESPACE}:{key} first",
        )
    if given:
        return given, "command line"
    if configured:
        return configured, "stack config"
    return None, ""


# ---- deriving config values -------------------------------------------------------------------


def _resource_requirements(container: Mapping[str, Any]) -> dict[str, str]:
    out = {str(r["type"]): str(r["value"]) for r in container.get("resourceRequirements", [])}
    if "VCPU" not in out and container.get("vcpus"):
        out["VCPU"] = str(container["vcpus"])
    if "MEMORY" not in out and container.get("memory"):
        out["MEMORY"] = str(container["memory"])
    return out


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


class Reader:
    """Reads the live resources and collects the adoption."""

    def __init__(self, args: argparse.Namespace, cfg: config_module.StackConfig, aws: Aws):
        self.args, self.cfg, self.aws = args, cfg, aws
        self.derived = Names(cfg.stack)
        self.result = Adoption(stack=cfg.stack, region=aws.region)
        self.live = Live()

    def set(self, key: str, value: Value) -> None:
        self.result.values[f"{NAMESPACE}:{key}"] = value

    def adopt(self, kind: str, key: str, import_id: str, type_: str, logical: str, by: str) -> None:
        self.result.adopted.append(Adopted(kind, key, import_id, type_, logical, by))
        self.set(key, import_id)

    # -- SQS --

    def _read(
        self,
        what: str,
        read: Callable[[str], T],
        *,
        given: str | None,
        configured: str | None,
        option: str,
        key: str,
        derived: str,
    ) -> tuple[T, str] | None:
        """One resource, by the command line's id, the stack config's, or else the stack's own
        name; None (with a note) when a resource under the stack's name does not exist."""
        ident, by = _found(given, configured, option=option, key=key)
        if ident is None:
            ident, by = derived, f"the stack's {what} name"
        try:
            return read(ident), by
        except (NotFoundError, ResourceMissingError):
            if ident != derived or given or configured:
                raise ResourceMissingError(f"{what} {ident} does not exist") from None
            self.result.notes.append(f"no {what} named {ident}: not adopted (pass {option})")
            return None

    def queues(self) -> None:
        adoption = self.cfg.adoption
        found = self._read(
            "SQS job queue",
            lambda ident: _queue_attributes(self.aws, _queue_url(self.aws, ident)),
            given=self.args.job_queue,
            configured=adoption.job_queue_url,
            option="--job-queue",
            key="adoptJobQueueUrl",
            derived=self.derived.job_queue,
        )
        if found is None:
            return
        attrs, by = found
        url = canonical_queue_url(attrs["QueueArn"])
        self._consumers(attrs["QueueArn"])
        self.adopt("SQS job queue", "adoptJobQueueUrl", url, SQS_QUEUE, "jobs", by)
        self.live.inputs["jobs"] = _queue_inputs(url, attrs)
        self.live.queue_attributes["jobs"] = attrs
        self.set("queueVisibilityTimeoutSeconds", int(attrs["VisibilityTimeout"]))
        self.set("queueRetentionSeconds", int(attrs["MessageRetentionPeriod"]))
        self._encryption(attrs)

        redrive = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else None
        if redrive:
            self.set("maxReceiveCount", int(redrive["maxReceiveCount"]))
        dlq_given, dlq_by = _found(
            self.args.dead_letter_queue,
            adoption.dead_letter_queue_url,
            option="--dead-letter-queue",
            key="adoptDeadLetterQueueUrl",
        )
        if dlq_given is None and redrive:
            dlq_given = str(redrive["deadLetterTargetArn"]).rsplit(":", 1)[-1]
            dlq_by = "the job queue's redrive policy"
        if dlq_given is None:
            self.result.notes.append(
                f"{url} has no redrive policy: the stack creates its DLQ and a redrive policy "
                f"with maxReceiveCount {self.cfg.queue.max_receive_count}"
            )
            return
        dlq_attrs = _queue_attributes(self.aws, _queue_url(self.aws, dlq_given))
        dlq_url = canonical_queue_url(dlq_attrs["QueueArn"])
        self.adopt(
            "SQS dead-letter queue",
            "adoptDeadLetterQueueUrl",
            dlq_url,
            SQS_QUEUE,
            "jobs-dlq",
            dlq_by,
        )
        self.live.inputs["jobs-dlq"] = _queue_inputs(dlq_url, dlq_attrs)
        self.live.queue_attributes["jobs-dlq"] = dlq_attrs
        self.set("dlqRetentionSeconds", int(dlq_attrs["MessageRetentionPeriod"]))

    def _consumers(self, queue_arn: str) -> None:
        """Who submits jobs from the queue today: with the stack's pipe running too, each
        message would go to whichever receives it first, under two job definitions."""
        found: list[str] = []
        try:
            mappings = page_items(
                self.aws.client("lambda"),
                "list_event_source_mappings",
                "lambda:ListEventSourceMappings",
                "EventSourceMappings",
                EventSourceArn=queue_arn,
            )
            found += [
                f"Lambda {m['FunctionArn'].rsplit(':', 1)[-1]} (event source mapping "
                f"{m['UUID']}, {m.get('State', '?')})"
                for m in mappings
            ]
            pipes = page_items(
                self.aws.client("pipes"),
                "list_pipes",
                "pipes:ListPipes",
                "Pipes",
                SourcePrefix=queue_arn,
            )
            found += [
                f"EventBridge Pipe {p['Name']} ({p.get('CurrentState', '?')})"
                for p in pipes
                if p["Name"] != self.derived.pipe and p.get("Source") in (None, queue_arn)
            ]
        except (AccessDeniedError, NotFoundError, ResourceMissingError) as error:
            self.result.notes.append(
                f"could not list what consumes the job queue today ({error}): check for a "
                "Lambda event source mapping or a pipe on it before the stack's pipe starts"
            )
            return
        self.result.consumers = found
        for consumer in found:
            self.result.notes.append(
                f"the job queue is consumed today by {consumer}: stop it when the stack's pipe "
                "starts, or both submit its jobs (README, 'Adopting a running platform')"
            )

    def _encryption(self, attrs: Mapping[str, str]) -> None:
        key_id = attrs.get("KmsMasterKeyId")
        if not key_id:
            self.set("queueKmsKeyArn", None)  # SSE-SQS (or none: the stack turns SSE-SQS on)
            return
        arn = _key_arn(self.aws, key_id)
        if arn is None:
            self.result.problems.append(
                f"the job queue's KMS key {key_id} could not be read (kms:DescribeKey): set "
                f"{NAMESPACE}:queueKmsKeyArn to its ARN yourself"
            )
            return
        self.set("queueKmsKeyArn", arn)

    # -- Batch --

    def batch(self) -> None:
        adoption = self.cfg.adoption
        found = self._read(
            "Batch job queue",
            lambda ident: _batch_job_queue(self.aws, ident),
            given=self.args.batch_job_queue,
            configured=adoption.batch_job_queue_arn,
            option="--batch-job-queue",
            key="adoptBatchJobQueueArn",
            derived=self.derived.batch_job_queue,
        )
        queue, by = found if found is not None else (None, "")
        orders = sorted(
            (queue or {}).get("computeEnvironmentOrder", []), key=lambda o: int(o["order"])
        )
        if queue is not None:
            self.adopt(
                "Batch job queue",
                "adoptBatchJobQueueArn",
                str(queue["jobQueueArn"]),
                BATCH_QUEUE,
                "batch-queue",
                by,
            )
            self.live.inputs["batch-queue"] = {
                "name": queue["jobQueueName"],
                "state": queue["state"],
                "priority": int(queue["priority"]),
                "computeEnvironmentOrders": [
                    {
                        "order": int(o["order"]),
                        "computeEnvironment": last_segment(o["computeEnvironment"]),
                    }
                    for o in orders
                ],
                "schedulingPolicyArn": queue.get("schedulingPolicyArn"),
                "jobStateTimeLimitActions": queue.get("jobStateTimeLimitActions", []),
            }

        ce_given, ce_by = _found(
            self.args.compute_environment,
            adoption.batch_compute_environment,
            option="--compute-environment",
            key="adoptBatchComputeEnvironment",
        )
        if ce_given is None and orders:
            ce_given, ce_by = (
                last_segment(orders[0]["computeEnvironment"]),
                "the job queue's first environment",
            )
        if ce_given is not None:
            self._compute_environment(_compute_environment(self.aws, ce_given), ce_by)

        definition = self._read(
            "Batch job definition",
            lambda ident: _job_definition(self.aws, ident),
            given=self.args.job_definition,
            configured=adoption.batch_job_definition_arn,
            option="--job-definition",
            key="adoptBatchJobDefinitionArn",
            derived=self.derived.batch_job_definition,
        )
        if definition is not None:
            self._job_definition(*definition)

    def _compute_environment(self, ce: Mapping[str, Any], by: str) -> None:
        name = str(ce["computeEnvironmentName"])
        resources = dict(ce.get("computeResources") or {})
        self.adopt(
            "Batch compute environment",
            "adoptBatchComputeEnvironment",
            name,
            BATCH_CE,
            "batch-compute",
            by,
        )
        inputs: dict[str, Any] = {
            "name": name,
            "type": ce.get("type"),
            "state": ce.get("state"),
            "computeResources": {
                "type": resources.get("type"),
                "maxVcpus": resources.get("maxvCpus"),
                "subnets": sorted(resources.get("subnets", [])),
                "securityGroupIds": sorted(resources.get("securityGroupIds", [])),
            },
        }
        role = str(ce.get("serviceRole") or "")
        if role and not role.endswith(SERVICE_LINKED_BATCH_ROLE):
            inputs["serviceRole"] = role
            self.result.notes.append(
                f"compute environment {name} keeps its own service role {role}: with it, a "
                "later change of its instance types or allocation strategy replaces the "
                "environment (infra/replacement.py); switching to Batch's service-linked role "
                "avoids that"
            )
        if resources.get("type") in ("SPOT", "EC2"):
            inputs["computeResources"] |= {
                "allocationStrategy": resources.get("allocationStrategy"),
                "instanceTypes": sorted(resources.get("instanceTypes", [])),
                "minVcpus": resources.get("minvCpus"),
            }
        self.live.inputs["batch-compute"] = inputs
        compute_type = resources.get("type")
        if compute_type in COMPUTE_TYPES:
            self.set("computeType", str(compute_type))
        if resources.get("maxvCpus") is not None:
            self.set("batchMaxVcpus", int(resources["maxvCpus"]))
        if compute_type == "SPOT" and resources.get("instanceTypes"):
            self.set("spotInstanceTypes", sorted(resources["instanceTypes"]))

    def _job_definition(self, definition: Mapping[str, Any], by: str) -> None:
        arn = str(definition["jobDefinitionArn"])
        container = dict(definition.get("containerProperties") or {})
        self.adopt(
            "Batch job definition",
            "adoptBatchJobDefinitionArn",
            arn,
            BATCH_DEFINITION,
            "batch-ml",
            by,
        )
        self.live.inputs["batch-ml"] = {
            "name": definition["jobDefinitionName"],
            "type": definition.get("type"),
            "platformCapabilities": definition.get("platformCapabilities", ["EC2"]),
            "containerProperties": container,
        }
        if container.get("image"):
            self.set("image", str(container["image"]))
        sizes = _resource_requirements(container)
        if "VCPU" in sizes:
            self.set("jobVcpu", _number(sizes["VCPU"]))
        if "MEMORY" in sizes:
            self.set("jobMemoryMib", int(float(sizes["MEMORY"])))
        timeout = (definition.get("timeout") or {}).get("attemptDurationSeconds")
        if timeout:
            self.set("jobTimeoutSeconds", int(timeout))
        attempts = (definition.get("retryStrategy") or {}).get("attempts")
        if attempts:
            self.set("jobAttempts", int(attempts))


def last_segment(arn_or_name: str) -> str:
    return str(arn_or_name).rsplit("/", 1)[-1]


def _names_same(a: str, b: str) -> bool:
    """A name and an id (URL, ARN) of the same resource count as the same; two ids or two
    names must be equal."""
    a_id, b_id = "/" in a, "/" in b
    if a_id == b_id:
        return a == b
    name, ident = (b, a) if a_id else (a, b)
    return last_segment(ident).split(":")[0] == name
