"""What `jobstream adopt` finds and reports: the adopted resources, the differences config
cannot express, and the resource types and provider defaults it compares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ops.stack_file import Value

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


@dataclass
class Live:
    """What was read, in the plan's input names, per program resource name."""

    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    queue_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
