"""AWS Batch for the ML container, and the EventBridge Pipe that feeds it from SQS.

One compute environment (Fargate, Fargate Spot or EC2 Spot) in the private subnets, one job
queue, one job definition, the execution and job roles, and the pipe SQS -> Batch (batch size
1: one message, one job; the message body reaches the job as ``JOBSTREAM_JOB_MESSAGE``). The
container runs ``jobstream-worker`` (the image's entry point) with the environment of the
contract (``jobstream.contract.env``); its exit statuses drive the retry strategy.

Nothing here depends on the phase beyond the job queue's ``state`` and the pipe's
``desiredState`` (both on in every phase that has them: in phase 4 the SQS path drains), so a
phase change never replaces the compute environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.container_roles import ecs_tasks_role, task_execution_role
from components.iam import Grant, assume_role_policy, policy_document, put_metrics_statement
from components.security_groups import Rule, worker_security_group
from jobstream.contract import env
from jobstream.contract.choices import ComputeType
from jobstream.contract.exits import RETRYABLE_EXITS
from jobstream.contract.metrics import NAMESPACE as METRICS_NAMESPACE

LOG_STREAM_PREFIX = "ml"
PIPE_JOB_NAME = "jobstream-ml"

ECR_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"

# Retry strategy (AWS Batch: at most 5 entries, all conditions of an entry must match, a job that
# matches no entry is retried, so the last entry exits on everything). Patterns may hold letters,
# digits, periods, colons and spaces, with an optional trailing '*' (AWS Batch API reference,
# EvaluateOnExit).
RETRY_ON_HOST_LOSS: Mapping[str, str] = {"action": "RETRY", "on_status_reason": "Host EC2*"}
"""EC2 Spot reclaim or a failed host: "Host EC2 (instance i-...) terminated."."""
RETRY_ON_FARGATE_SPOT: Mapping[str, str] = {
    "action": "RETRY",
    "on_status_reason": "Your Spot Task was interrupted*",
}
RETRY_ON_START_FAILURES: tuple[Mapping[str, str], ...] = (
    # Image pull and task start-up failures (registry throttling, ENI or network hiccups).
    {"action": "RETRY", "on_reason": "CannotPullContainerError*"},
    {"action": "RETRY", "on_reason": "ResourceInitializationError*"},
)
RETRY_ON_WORKER_TEMPORARY: tuple[Mapping[str, str], ...] = tuple(
    {"action": "RETRY", "on_exit_code": str(int(code))} for code in RETRYABLE_EXITS
)
"""The worker exits ``TEMPORARY`` when a dependency (SSM, the database) failed."""
EXIT_ON_EVERYTHING_ELSE: Mapping[str, str] = {"action": "EXIT", "on_reason": "*"}
"""Anything else, above all the worker's permanent failures (poison message, handler failed,
configuration) and the attempt timeout, fails the job at once: rerunning a job the application
rejected would only repeat the failure. The failed-jobs capture keeps it."""
MAX_EVALUATE_ON_EXIT = 5


def retry_conditions(compute_type: ComputeType) -> list[dict[str, str]]:
    """The job definition's ``evaluateOnExit``, in order, for one kind of compute: the host-loss
    condition that kind can meet (EC2 hosts, or Fargate Spot interruptions), start-up failures,
    the worker's temporary exit, then exit on everything else."""
    host: tuple[Mapping[str, str], ...] = (
        (RETRY_ON_HOST_LOSS,)
        if compute_type is ComputeType.SPOT
        else (RETRY_ON_FARGATE_SPOT,)
        if compute_type is ComputeType.FARGATE_SPOT
        else ()
    )
    entries = [
        *host,
        *RETRY_ON_START_FAILURES,
        *RETRY_ON_WORKER_TEMPORARY,
        EXIT_ON_EVERYTHING_ELSE,
    ]
    if len(entries) > MAX_EVALUATE_ON_EXIT:
        raise ValueError(f"{len(entries)} evaluateOnExit entries; AWS Batch takes at most 5")
    return [dict(e) for e in entries]


@dataclass(frozen=True)
class BatchTrigger:
    """The EventBridge Pipe from the SQS job queue to the Batch job queue."""

    pipe_name: str
    queue_arn: pulumi.Input[str]
    consume: Grant
    """``JobQueue.grant_consume()``: what the pipe's role needs on the queue (and its key)."""
    running: bool
    log_group_name: str


@dataclass(frozen=True)
class BatchArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    compute_type: ComputeType
    max_vcpus: int
    spot_instance_types: Sequence[str]
    compute_environment_name_prefix: str
    job_queue_name: str
    job_definition_name: str
    log_group_name: str
    log_retention_days: int
    image: str
    job_vcpu: float
    job_memory_mib: int
    job_timeout_seconds: int
    job_attempts: int
    enabled: bool
    """Job queue ENABLED (True) or DISABLED (False)."""
    stack: str
    routing_parameter_name: str
    db_host: pulumi.Input[str]
    db_name: str
    db_user: str
    db_security_group_id: pulumi.Input[str]
    """The security group the jobs reach PostgreSQL through (the RDS Proxy's)."""
    trigger: BatchTrigger | None
    adopted_compute_environment: str | None
    """The name of a running compute environment to import instead of creating one (named with
    ``compute_environment_name_prefix``)."""
    job_queue_import_id: str | None
    """The ARN of a running job queue to import; ``job_queue_name`` must then be its name. An
    adopted job queue (it holds the queued jobs) is protected."""
    job_definition_import_id: str | None
    """The ARN (with revision) of a job definition to import; ``job_definition_name`` must then
    be its name."""


class Batch(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    job_role: aws.iam.Role
    execution_role: aws.iam.Role
    compute_environment_arn: pulumi.Output[str]
    job_queue_arn: pulumi.Output[str]
    job_queue_name: pulumi.Output[str]
    job_definition_arn: pulumi.Output[str]
    pipe_name: pulumi.Output[str] | None
    log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BatchArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:batch:Batch", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self._region = aws.get_region_output(opts=invoke).region
        self._account = aws.get_caller_identity_output(opts=invoke).account_id

        sg = worker_security_group(
            self,
            f"{name}-jobs",
            vpc_id=args.vpc_id,
            description=f"{args.job_queue_name}: Batch jobs (egress only)",
            tag_name=f"{args.job_queue_name}-jobs",
            https=Rule(f"{name}-jobs-https", "HTTPS to AWS APIs and the container registry"),
            postgres=Rule(f"{name}-jobs-postgres", "PostgreSQL to the RDS Proxy"),
            proxy_security_group_id=args.db_security_group_id,
        )
        self.security_group_id = sg.id

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-jobs",
            name=args.log_group_name,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        self.log_group_name = log_group.name

        self.execution_role = task_execution_role(
            self,
            f"{name}-execution",
            account=self._account,
            image=args.image,
            log_group_arn=log_group.arn,
            description=f"{args.job_definition_name}: pull the image, write the job logs",
        )
        self.job_role = ecs_tasks_role(
            self,
            f"{name}-job",
            account=self._account,
            description=f"{args.job_definition_name}: the ML job itself",
        )
        aws.iam.RolePolicy(
            f"{name}-job-metrics",
            role=self.job_role.id,
            policy=policy_document(self, [put_metrics_statement(METRICS_NAMESPACE)]),
            opts=child,
        )

        compute = self._compute_environment(name, args, sg)
        self.compute_environment_arn = compute.arn
        queue = aws.batch.JobQueue(
            f"{name}-queue",
            name=args.job_queue_name,
            state="ENABLED" if args.enabled else "DISABLED",
            priority=1,
            compute_environment_orders=[{"order": 1, "compute_environment": compute.arn}],
            opts=pulumi.ResourceOptions(
                parent=self,
                import_=args.job_queue_import_id,
                protect=args.job_queue_import_id is not None,
            ),
        )
        self.job_queue_arn, self.job_queue_name = queue.arn, queue.name

        definition = self._job_definition(name, args, log_group)
        self.job_definition_arn = definition.arn

        self.pipe_name = None
        if args.trigger is not None:
            self.pipe_name = self._pipe(name, args, args.trigger, queue, definition).name

        self.register_outputs(
            {
                "securityGroupId": self.security_group_id,
                "jobQueueArn": self.job_queue_arn,
                "jobDefinitionArn": self.job_definition_arn,
                "computeEnvironmentArn": self.compute_environment_arn,
                "pipeName": self.pipe_name,
                "logGroupName": self.log_group_name,
            }
        )

    # ---- compute -----------------------------------------------------------------------------

    def _compute_environment(
        self, name: str, args: BatchArgs, sg: aws.ec2.SecurityGroup
    ) -> aws.batch.ComputeEnvironment:
        resources: dict[str, Any] = {
            "type": args.compute_type.value,
            "max_vcpus": args.max_vcpus,
            "subnets": list(args.subnet_ids),
            "security_group_ids": [sg.id],
        }
        if not args.compute_type.is_fargate:
            instance_role = aws.iam.Role(
                f"{name}-instance",
                description=f"{args.job_queue_name}: ECS agent on Batch EC2 Spot instances",
                assume_role_policy=assume_role_policy(
                    self, "ec2.amazonaws.com", source_account=self._account
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-instance",
                role=instance_role.name,
                policy_arn=ECR_INSTANCE_POLICY,
                opts=pulumi.ResourceOptions(parent=self),
            )
            profile = aws.iam.InstanceProfile(
                f"{name}-instance",
                role=instance_role.name,
                opts=pulumi.ResourceOptions(parent=self),
            )
            resources |= {
                "allocation_strategy": "SPOT_PRICE_CAPACITY_OPTIMIZED",
                "instance_types": list(args.spot_instance_types),
                "instance_role": profile.arn,
                "min_vcpus": 0,
            }
        # No service_role: Batch uses its service-linked role (AWSServiceRoleForBatch), which
        # keeps more changes in place (infra/replacement.py). A name prefix lets a replacement
        # be created before the old environment goes, but the delete of the old one still races
        # the job queue's update ("found existing JobQueue relationship", pulumi-aws #6233): the
        # plan marks it a blocker and docs/database-batch.md gives the two-step procedure.
        # An adopted environment keeps its own name (a name change replaces it).
        naming: dict[str, str] = (
            {"name": args.adopted_compute_environment}
            if args.adopted_compute_environment
            else {"name_prefix": args.compute_environment_name_prefix}
        )
        return aws.batch.ComputeEnvironment(
            f"{name}-compute",
            type="MANAGED",
            state="ENABLED",
            compute_resources=resources,  # pyright: ignore[reportArgumentType]
            opts=pulumi.ResourceOptions(
                parent=self,
                delete_before_replace=False,
                import_=args.adopted_compute_environment,
            ),
            **naming,  # pyright: ignore[reportArgumentType]
        )

    def _job_definition(
        self, name: str, args: BatchArgs, log_group: aws.cloudwatch.LogGroup
    ) -> aws.batch.JobDefinition:
        variables = env.worker_environment(
            env.CONSUMER_SQS,
            stack=args.stack,
            region=self._region,
            routing_parameter=args.routing_parameter_name,
            db_host=args.db_host,
            db_name=args.db_name,
            db_user=args.db_user,
        )
        environment = [{"name": k, "value": v} for k, v in sorted(variables.items())]
        container: dict[str, Any] = {
            "image": args.image,
            "resourceRequirements": [
                {"type": "VCPU", "value": f"{args.job_vcpu:g}"},
                {"type": "MEMORY", "value": str(args.job_memory_mib)},
            ],
            "executionRoleArn": self.execution_role.arn,
            "jobRoleArn": self.job_role.arn,
            "environment": environment,
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group.name,
                    "awslogs-region": self._region,
                    "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                },
            },
        }
        if args.compute_type.is_fargate:
            container["networkConfiguration"] = {"assignPublicIp": "DISABLED"}
            container["fargatePlatformConfiguration"] = {"platformVersion": "LATEST"}
        return aws.batch.JobDefinition(
            f"{name}-ml",
            name=args.job_definition_name,
            type="container",
            platform_capabilities=["FARGATE" if args.compute_type.is_fargate else "EC2"],
            container_properties=pulumi.Output.json_dumps(container),
            retry_strategy={
                "attempts": args.job_attempts,
                "evaluate_on_exits": retry_conditions(args.compute_type),  # pyright: ignore[reportArgumentType]
            },
            timeout={"attempt_duration_seconds": args.job_timeout_seconds},
            propagate_tags=True,
            opts=pulumi.ResourceOptions(parent=self, import_=args.job_definition_import_id),
        )

    # ---- the trigger -------------------------------------------------------------------------

    def _pipe(
        self,
        name: str,
        args: BatchArgs,
        trigger: BatchTrigger,
        queue: aws.batch.JobQueue,
        definition: aws.batch.JobDefinition,
    ) -> aws.pipes.Pipe:
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-pipe",
            name=trigger.log_group_name,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-pipe",
            description=f"{trigger.pipe_name}: read the SQS job queue, submit Batch jobs",
            assume_role_policy=assume_role_policy(
                self, "pipes.amazonaws.com", source_account=self._account
            ),
            opts=child,
        )
        # The queue's statements first and its key's last: the order the live policy has.
        statements: list[Mapping[str, Any]] = [
            *trigger.consume.on_resource,
            {
                "sid": "SubmitBatchJob",
                "actions": ["batch:SubmitJob"],
                "resources": [
                    queue.arn,
                    definition.arn_prefix.apply(lambda a: f"{a}:*"),
                ],
            },
            {
                "sid": "WritePipeLogs",
                "actions": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "resources": [log_group.arn.apply(lambda a: f"{a}:log-stream:*")],
            },
            *trigger.consume.on_key,
        ]
        policy = aws.iam.RolePolicy(
            f"{name}-pipe", role=role.id, policy=policy_document(self, statements), opts=child
        )
        return aws.pipes.Pipe(
            f"{name}-pipe",
            name=trigger.pipe_name,
            description="SQS job queue -> AWS Batch: one message, one job",
            desired_state="RUNNING" if trigger.running else "STOPPED",
            role_arn=role.arn,
            source=trigger.queue_arn,
            source_parameters={
                "sqs_queue_parameters": {"batch_size": 1, "maximum_batching_window_in_seconds": 0}
            },
            target=queue.arn,
            target_parameters={
                "batch_job_parameters": {
                    # The name, not ``definition.arn`` (which ends in ``:<revision>``): a bare
                    # name means the latest ACTIVE revision (Pipes PipeTargetBatchJobParameters
                    # JobDefinition: "If name is specified without a revision then the latest
                    # active revision is used"). A new image registers a new revision and, with
                    # deregister_on_new_revision (default true), deregisters the old one before
                    # the pipe could be updated to it.
                    "job_definition": definition.name,
                    "job_name": PIPE_JOB_NAME,
                    # Dynamic path parameters: the pipe fills these from the SQS message.
                    "container_overrides": {
                        "environments": [
                            {"name": k, "value": v} for k, v in env.PIPE_OVERRIDES.items()
                        ]
                    },
                }
            },
            log_configuration={
                "level": "ERROR",
                "cloudwatch_logs_log_destination": {"log_group_arn": log_group.arn},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
