"""Comparing the adopted resources' live settings with the offline plan's inputs: what the first
`pulumi up` would still change, and whether it replaces a resource (``infra.replacement``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ops.adoption.live import last_segment
from ops.adoption.model import (
    BATCH_CE,
    BATCH_DEFINITION,
    BATCH_QUEUE,
    KEPT_WHEN_UNSET,
    PROVIDER_DEFAULTS,
    SQS_POLICY,
    SQS_REDRIVE,
    SQS_REDRIVE_ALLOW,
    Adopted,
    Adoption,
    Difference,
    Live,
)


def _stack_value(type_: str, inputs: Mapping[str, Any], key: str) -> Any:
    if key in inputs:
        return inputs[key]
    return PROVIDER_DEFAULTS.get(type_, {}).get(key)


def differences(result: Adoption, live: Live, plan: Any) -> None:
    from infra.replacement import replacement

    for adopted in result.adopted:
        planned = plan.one(adopted.type, adopted.logical)
        stack_inputs = dict(planned.inputs)
        observed = live.inputs[adopted.logical]
        if adopted.type == BATCH_QUEUE:
            stack_inputs["computeEnvironmentOrders"] = [
                {
                    "order": int(o["order"]),
                    "computeEnvironment": last_segment(o["computeEnvironment"]),
                }
                for o in stack_inputs.get("computeEnvironmentOrders", [])
            ]
        if adopted.type == BATCH_CE:
            resources = dict(stack_inputs.get("computeResources") or {})
            for key in ("subnets", "securityGroupIds", "instanceTypes"):
                if key in resources:
                    resources[key] = sorted(resources[key])
            stack_inputs["computeResources"] = resources
        if adopted.type == BATCH_DEFINITION:
            _job_definitiondifferences(result, adopted, observed, stack_inputs)
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


def _job_definitiondifferences(
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
