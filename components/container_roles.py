"""IAM roles of containers run on ECS / Fargate (the Batch job and the Kafka consumer service).

Both run the same image, so both need the same task *execution* role: the ECS agent pulls the
image (scoped to the image's own ECR repository) and writes the container's logs (scoped to the
log group's streams). The task role (what the application itself may do) differs per caller.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import assume_role_policy, policy_document

ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"
ECR_PULL_ACTIONS: tuple[str, ...] = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+?)(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$"
)


def ecr_repository_arn(image: str, partition: str = "aws") -> str | None:
    """The ECR repository ARN of a private ECR image reference; None for any other registry."""
    match = _ECR_IMAGE.match(image)
    if match is None:
        return None
    return (
        f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
    )


def ecs_tasks_role(
    parent: pulumi.Resource,
    name: str,
    *,
    account: pulumi.Input[str],
    description: str | None = None,
) -> aws.iam.Role:
    """A role that ECS tasks of this account (and only these) may assume."""
    return aws.iam.Role(
        name,
        description=description,
        assume_role_policy=assume_role_policy(parent, ECS_TASKS_SERVICE, source_account=account),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def task_execution_role(
    parent: pulumi.Resource,
    name: str,
    *,
    account: pulumi.Input[str],
    image: str,
    log_group_arn: pulumi.Output[str],
    description: str | None = None,
) -> aws.iam.Role:
    """The execution role (logical name ``name``, its inline policy too): write log streams of
    ``log_group_arn``; for a private ECR ``image``, pull from that repository only."""
    role = ecs_tasks_role(parent, name, account=account, description=description)
    statements: list[dict[str, Any]] = [
        {
            "sid": "WriteLogs",
            "actions": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "resources": [log_group_arn.apply(lambda a: f"{a}:log-stream:*")],
        }
    ]
    repository = ecr_repository_arn(image)
    if repository is not None:
        statements += [
            {"sid": "PullImage", "actions": list(ECR_PULL_ACTIONS), "resources": [repository]},
            {
                # ecr:GetAuthorizationToken has no resource-level permissions: AWS accepts
                # only "*" for it (the token alone reaches no repository).
                "sid": "RegistryLogin",
                "actions": ["ecr:GetAuthorizationToken"],
                "resources": ["*"],
            },
        ]
    aws.iam.RolePolicy(
        name,
        role=role.id,
        policy=policy_document(parent, statements),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return role
