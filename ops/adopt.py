"""``jobstream adopt``: take over the platform that runs today instead of building a second one.

Reads the running SQS job queue and DLQ and the AWS Batch compute environment, job queue and
job definition (by the ids in the stack's config or on the command line, else discovered: the
queue and the Batch job queue by the stack's names, the DLQ from the queue's redrive policy,
the compute environment from the job queue), and derives the config values that make the
stack's inputs equal their live settings, so that the import changes nothing that config can
say. It then evaluates the offline plan with those values and compares each adopted resource's
inputs with what it read: every difference left is one config cannot express, listed with what
the first ``pulumi up`` does about it (an in-place update, or a replacement: a blocker, by
``infra.replacement``'s provider rules). ``--write`` puts the values into ``Pulumi.<stack>.yaml``
keeping its comments and order.

Pulumi's ``import`` option (https://www.pulumi.com/docs/iac/concepts/resources/options/import/):
since pulumi/pulumi#19339 an import whose inputs differ from the resource succeeds and the same
``pulumi up`` then updates the resource to the program's inputs (pulumi/docs#16580), so a
difference is a change the first ``up`` makes, not a failed import.

Not adoptable here, and why (README, "Adopting a running platform"): the RDS instance and the
RDS Proxy (the stack builds its own VPC; importing the instance would move it into that VPC,
with an outage, and swap its parameter group; the proxy's subnets cannot change without a new
proxy; front a running instance with ``existingDbInstanceId`` instead), and whatever submits
Batch jobs from SQS today (the stack's EventBridge Pipe replaces it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from infra import config as config_module
from infra.config import NAMESPACE, ConfigError, project_dir, read_stack_config
from jobstream.contract.names import Names
from ops.aws_clients import (
    AccessDeniedError,
    Aws,
    NotFoundError,
    ResourceMissingError,
    UsageError,
    aws_call,
)
from ops.errors import EXIT_CHECK_FAILED, EXIT_OK, handles_errors
from ops.report import console, print_json
from ops.stack_file import Value, write_values

T = TypeVar("T")

SQS_QUEUE = "aws:sqs/queue:Queue"
SQS_REDRIVE = "aws:sqs/redrivePolicy:RedrivePolicy"
SQS_REDRIVE_ALLOW = "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy"
SQS_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
BATCH_CE = "aws:batch/computeEnvironment:ComputeEnvironment"
BATCH_QUEUE = "aws:batch/jobQueue:JobQueue"
BATCH_DEFINITION = "aws:batch/jobDefinition:JobDefinition"

SERVICE_LINKED_BATCH_ROLE = ":role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"

PROVIDER_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    # What the provider sends for an input the program leaves unset, where the live value can
    # differ (pulumi-aws sqs.Queue docs: delay_seconds defaults to 0, max_message_size to
    # 262144, kms_data_key_reuse_period_seconds to 300).
    SQS_QUEUE: {
        "delaySeconds": 0,
        "maxMessageSize": 262_144,
        "fifoQueue": False,
        "sqsManagedSseEnabled": False,
        "kmsDataKeyReusePeriodSeconds": 300,
    },
    BATCH_QUEUE: {"schedulingPolicyArn": None, "jobStateTimeLimitActions": []},
}

KEPT_WHEN_UNSET: Mapping[str, tuple[str, ...]] = {
    # Optional + Computed in the provider's schema: left unset by the program, the live value
    # stays (no diff). Read anyway, because it decides what later changes replace.
    BATCH_CE: ("serviceRole",),
}

COMPUTE_TYPES = ("FARGATE", "FARGATE_SPOT", "SPOT")
"""``computeResources.type`` values that ``jobstream:computeType`` can say (EC2 on demand: no)."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "adopt",
        help="import the running SQS queues and AWS Batch setup into a stack",
        description=(
            "Read the running SQS job queue and DLQ and the AWS Batch compute environment, "
            "job queue and job definition; print the config values that make the stack's "
            "inputs match them (so the import changes nothing config can say) and every "
            "difference config cannot express, with what the first `pulumi up` would do about "
            "it. --write puts the values into Pulumi.<stack>.yaml, keeping its comments."
        ),
    )
    parser.add_argument("--stack", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--region", help="AWS region (default: the stack's aws:region)")
    parser.add_argument("--profile", help="AWS named profile (default: the usual boto3 chain)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.add_argument(
        "--write", action="store_true", help="write the values into Pulumi.<stack>.yaml"
    )
    parser.add_argument("--job-queue", metavar="NAME|URL", help="the SQS job queue")
    parser.add_argument(
        "--dead-letter-queue",
        metavar="NAME|URL",
        help="the SQS DLQ (default: the job queue's redrive target)",
    )
    parser.add_argument("--batch-job-queue", metavar="NAME|ARN", help="the Batch job queue")
    parser.add_argument(
        "--compute-environment",
        metavar="NAME",
        help="the Batch compute environment (default: the job queue's)",
    )
    parser.add_argument(
        "--job-definition",
        metavar="NAME|ARN",
        help="the Batch job definition (default: the latest active revision of its name)",
    )
    parser.set_defaults(handler=run)


# ---- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adopted:
    """One running resource the stack will import."""

    kind: str
    key: str
    """The config key that holds its import id."""
    import_id: str
    type: str
    logical: str
    """Its resource name in the program (``jobs``, ``batch-queue``...)."""
    found_by: str


@dataclass(frozen=True)
class Difference:
    """A live setting the stack's inputs cannot match: what the first ``pulumi up`` changes."""

    resource: str
    input: str
    live: Any
    stack: Any
    effect: str
    """``update`` (in place), ``replace`` (a blocker) or ``overwrite`` (a sub-resource)."""
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "input": self.input,
            "live": self.live,
            "stack": self.stack,
            "effect": self.effect,
            "why": self.why,
        }


@dataclass
class Adoption:
    stack: str
    region: str
    adopted: list[Adopted] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    """``namespace:key`` -> value; None removes the key."""
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Why the values cannot be used (the config they make is invalid)."""
    notes: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    """What consumes the job queue today besides the stack (a Lambda mapping, a pipe)."""
    written: bool = False

    @property
    def blockers(self) -> list[Difference]:
        return [d for d in self.differences if d.effect == "replace"]

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "adopt",
            "stack": self.stack,
            "region": self.region,
            "adopted": [
                {
                    "kind": a.kind,
                    "key": a.key,
                    "importId": a.import_id,
                    "type": a.type,
                    "name": a.logical,
                    "foundBy": a.found_by,
                }
                for a in self.adopted
            ],
            "values": self.values,
            "differences": [d.to_json() for d in self.differences],
            "blockers": len(self.blockers),
            "problems": self.problems,
            "notes": self.notes,
            "consumers": self.consumers,
            "written": self.written,
        }


# ---- reading the live resources -----------------------------------------------------------------


@dataclass
class Live:
    """What was read, in the plan's input names, per program resource name."""

    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    queue_attributes: dict[str, dict[str, str]] = field(default_factory=dict)


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
    with aws_call("batch:DescribeJobDefinitions"):
        if name_or_arn.startswith("arn:"):
            found = batch.describe_job_definitions(jobDefinitions=[name_or_arn])["jobDefinitions"]
        else:
            found = batch.describe_job_definitions(jobDefinitionName=name_or_arn, status="ACTIVE")[
                "jobDefinitions"
            ]
    found = sorted(found, key=lambda d: int(d.get("revision", 0)), reverse=True)
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


class _Reader:
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
            with aws_call("lambda:ListEventSourceMappings"):
                mappings = self.aws.client("lambda").list_event_source_mappings(
                    EventSourceArn=queue_arn
                )["EventSourceMappings"]
            found += [
                f"Lambda {m['FunctionArn'].rsplit(':', 1)[-1]} (event source mapping "
                f"{m['UUID']}, {m.get('State', '?')})"
                for m in mappings
            ]
            with aws_call("pipes:ListPipes"):
                pipes = self.aws.client("pipes").list_pipes(SourcePrefix=queue_arn)["Pipes"]
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
                    {"order": int(o["order"]), "computeEnvironment": _last(o["computeEnvironment"])}
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
                _last(orders[0]["computeEnvironment"]),
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


def _last(arn_or_name: str) -> str:
    return str(arn_or_name).rsplit("/", 1)[-1]


def _names_same(a: str, b: str) -> bool:
    """A name and an id (URL, ARN) of the same resource count as the same; two ids or two
    names must be equal."""
    a_id, b_id = "/" in a, "/" in b
    if a_id == b_id:
        return a == b
    name, ident = (b, a) if a_id else (a, b)
    return _last(ident).split(":")[0] == name


# ---- comparing with the plan ------------------------------------------------------------------


def _stack_value(type_: str, inputs: Mapping[str, Any], key: str) -> Any:
    if key in inputs:
        return inputs[key]
    return PROVIDER_DEFAULTS.get(type_, {}).get(key)


def _differences(result: Adoption, live: Live, plan: Any) -> None:
    from infra.replacement import replacement

    for adopted in result.adopted:
        planned = plan.one(adopted.type, adopted.logical)
        stack_inputs = dict(planned.inputs)
        observed = live.inputs[adopted.logical]
        if adopted.type == BATCH_QUEUE:
            stack_inputs["computeEnvironmentOrders"] = [
                {"order": int(o["order"]), "computeEnvironment": _last(o["computeEnvironment"])}
                for o in stack_inputs.get("computeEnvironmentOrders", [])
            ]
        if adopted.type == BATCH_CE:
            resources = dict(stack_inputs.get("computeResources") or {})
            for key in ("subnets", "securityGroupIds", "instanceTypes"):
                if key in resources:
                    resources[key] = sorted(resources[key])
            stack_inputs["computeResources"] = resources
        if adopted.type == BATCH_DEFINITION:
            _job_definition_differences(result, adopted, observed, stack_inputs)
            continue
        swap = replacement(adopted.type, observed, stack_inputs)
        replaced = set(swap.inputs) if swap else set()
        for key, live_value in observed.items():
            if key in KEPT_WHEN_UNSET.get(adopted.type, ()):
                continue
            if isinstance(live_value, Mapping):
                nested = stack_inputs.get(key) or {}
                for sub, sub_live in live_value.items():
                    sub_stack = nested.get(sub)
                    if _same(sub_live, sub_stack):
                        continue
                    path = f"{key}.{sub}"
                    result.differences.append(
                        _difference(adopted, path, sub_live, sub_stack, path in replaced)
                    )
                continue
            stack_value = _stack_value(adopted.type, stack_inputs, key)
            if _same(live_value, stack_value):
                continue
            result.differences.append(
                _difference(adopted, key, live_value, stack_value, key in replaced)
            )
    _queue_sub_resources(result, live, plan)


def _same(live: Any, stack: Any) -> bool:
    if isinstance(live, bool) or isinstance(stack, bool):
        return bool(live) == bool(stack)
    if isinstance(live, int | float) and isinstance(stack, int | float):
        return float(live) == float(stack)
    return live == stack


WHY: Mapping[str, str] = {
    "receiveWaitTimeSeconds": "the stack long-polls (20 s): fewer empty receives",
    "kmsDataKeyReusePeriodSeconds": "the stack reuses a data key for 300 s",
    "kmsMasterKeyId": "the stack names the key by its ARN (the same key)",
    "sqsManagedSseEnabled": "the stack encrypts at rest with SSE-SQS when no KMS key is set",
    "computeResources.subnets": "the environment moves to the stack's private subnets",
    "computeResources.securityGroupIds": "the environment moves to the stack's security group",
    "computeResources.allocationStrategy": "the stack uses SPOT_PRICE_CAPACITY_OPTIMIZED",
    "serviceRole": "the stack uses Batch's service-linked role",
    "priority": "the stack's job queue has priority 1",
    "maxMessageSize": "the provider's default is 262144 bytes when unset (pulumi-aws sqs.Queue "
    "docs); producers sending larger messages would then be refused",
    "delaySeconds": "the stack delivers without delay (the provider's default 0)",
    "computeEnvironmentOrders": "the job queue is served by the stack's compute environment",
}


def _difference(adopted: Adopted, path: str, live: Any, stack: Any, replaces: bool) -> Difference:
    why = WHY.get(path, "a setting the stack's config cannot express")
    if replaces:
        why += "; the provider replaces the resource for this change (infra/replacement.py)"
    return Difference(
        resource=f"{adopted.kind} {adopted.import_id}",
        input=path,
        live=live,
        stack=stack,
        effect="replace" if replaces else "update",
        why=why,
    )


def _job_definition_differences(
    result: Adoption, adopted: Adopted, observed: Mapping[str, Any], stack: Mapping[str, Any]
) -> None:
    resource = f"{adopted.kind} {adopted.import_id}"
    for key in ("name", "type", "platformCapabilities"):
        if not _same(observed.get(key), stack.get(key)):
            result.differences.append(
                Difference(
                    resource,
                    key,
                    observed.get(key),
                    stack.get(key),
                    "update",
                    "a setting the stack's config cannot express",
                )
            )
    planned = stack.get("containerProperties")
    planned_container = json.loads(planned) if isinstance(planned, str) else dict(planned or {})
    live_container = dict(observed.get("containerProperties") or {})
    changed = sorted(
        key
        for key in set(planned_container) | set(live_container)
        if key not in ("vcpus", "memory")  # said by resourceRequirements in the stack
        and not _same(live_container.get(key), planned_container.get(key))
    )
    if changed:
        result.differences.append(
            Difference(
                resource,
                "containerProperties",
                {k: live_container.get(k) for k in changed},
                {k: planned_container.get(k) for k in changed},
                "update",
                "job definitions are immutable: the first `pulumi up` registers the stack's "
                "revision (its environment, roles, logs and retry rules) and deregisters the "
                "imported one (pulumi-aws JobDefinition: deregister_on_new_revision defaults to "
                f"true); changed: {', '.join(changed)}",
            )
        )


def _queue_sub_resources(result: Adoption, live: Live, plan: Any) -> None:
    """The redrive policy, redrive-allow policy and queue policy the stack creates on the
    adopted queues: each sets one queue attribute, overwriting what the queue has."""
    places = (
        ("jobs", SQS_REDRIVE, "jobs", "RedrivePolicy", "redrivePolicy"),
        ("jobs-dlq", SQS_REDRIVE_ALLOW, "jobs-dlq", "RedriveAllowPolicy", "redriveAllowPolicy"),
        ("jobs", SQS_POLICY, "jobs", "Policy", "policy"),
        ("jobs-dlq", SQS_POLICY, "jobs-dlq", "Policy", "policy"),
    )
    by_logical = {a.logical: a for a in result.adopted}
    for queue, type_, logical, attribute, input_key in places:
        adopted = by_logical.get(queue)
        if adopted is None:
            continue
        raw = live.queue_attributes[queue].get(attribute)
        planned = plan.one(type_, logical).inputs.get(input_key)
        live_doc = json.loads(raw) if raw else None
        stack_doc = json.loads(planned) if isinstance(planned, str) else planned
        if attribute == "RedrivePolicy" and live_doc and stack_doc:
            live_doc = {**live_doc, "maxReceiveCount": int(live_doc["maxReceiveCount"])}
        if live_doc == stack_doc:
            continue
        result.differences.append(
            Difference(
                resource=f"{adopted.kind} {adopted.import_id}",
                input=f"{attribute} ({type_.rsplit(':', 1)[-1]})",
                live=live_doc,
                stack=stack_doc,
                effect="overwrite",
                why=(
                    "the stack adds this queue attribute with its own resource (the queue has none)"
                    if live_doc is None
                    else "the stack sets this queue attribute with its own resource, replacing "
                    "what the queue has"
                ),
            )
        )


# ---- the command -----------------------------------------------------------------------------


@handles_errors
def run(args: argparse.Namespace) -> int:
    directory = project_dir()
    raw = read_stack_config(args.stack, directory)
    source = f"Pulumi.{args.stack}.yaml"
    cfg = config_module.parse(raw, stack=args.stack, source=source)
    aws = Aws(args.region or cfg.region, args.profile)
    if aws.region != cfg.region:
        raise UsageError(
            f"--region {aws.region} is not the stack's region ({cfg.region}): a stack imports "
            "resources of its own region only"
        )
    reader = _Reader(args, cfg, aws)
    reader.queues()
    reader.batch()
    result = reader.result
    if not result.adopted:
        raise ResourceMissingError(
            f"nothing to adopt in {aws.region}: no SQS queue or Batch job queue under the "
            f"stack's names ({reader.derived.job_queue}, {reader.derived.batch_job_queue})",
            hint="name them: --job-queue, --batch-job-queue, --job-definition",
        )
    result.notes.append(
        "the stack's default tags (Project, Environment, ManagedBy) are added to every adopted "
        "resource: a tag update"
    )

    # An empty value unsets an optional key (what --write's removal does to the file).
    overrides = {key: _config_text(value) for key, value in result.values.items()}
    adopted_raw = raw | overrides
    try:
        config_module.parse(
            adopted_raw, stack=args.stack, source=f"{source} with the adopted values"
        )
    except ConfigError as error:
        result.problems.extend(f"{NAMESPACE}:{p.key}: {p.allowed}" for p in error.problems)
    if not result.problems:
        from infra.plan import run_plan

        plan = run_plan(args.stack, overrides=overrides, directory=directory)
        _differences(result, reader.live, plan)
        if args.write:
            result.written = write_values(directory / source, result.values)
    _print(args, result, source)
    return EXIT_CHECK_FAILED if result.problems or result.blockers else EXIT_OK


def _config_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _print(args: argparse.Namespace, result: Adoption, source: str) -> None:
    if args.json:
        print_json(result.to_json())
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    found = Table(title=f"jobstream adopt: stack {result.stack}, {result.region}")
    for column in ("adopts", "import id", "found by"):
        found.add_column(column)
    for a in result.adopted:
        found.add_row(a.kind, escape(a.import_id), a.found_by)
    out.print(found)
    values = Table(title=f"config values ({source})")
    values.add_column("key")
    values.add_column("value")
    for key, value in result.values.items():
        values.add_row(key, "(removed)" if value is None else escape(_config_text(value)))
    out.print(values)
    if result.differences:
        out.print("What config cannot express (the first `pulumi up` changes it):")
        for d in result.differences:
            effect = "[bold red]REPLACE (blocker)[/]" if d.effect == "replace" else d.effect
            out.print(
                f"  {effect}  {escape(d.resource)}  {escape(d.input)}: "
                f"{escape(_short(d.live))} -> {escape(_short(d.stack))}"
            )
            out.print(f"      {d.why}", markup=False)
    else:
        out.print("No difference left: the import changes nothing on the adopted resources.")
    for note in result.notes:
        out.print(f"note: {note}", markup=False)
    for problem in result.problems:
        out.print(f"[bold red]cannot use these values[/]: {escape(problem)}")
    if result.written:
        out.print(f"Wrote {source}. Next: `pulumi preview --stack {result.stack}` shows imports.")
    elif args.write and not result.problems:
        out.print(f"{source} already holds these values.")
    elif not result.problems:
        out.print(f"Run again with --write to put these values into {source}.")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "... (--json shows all)"
