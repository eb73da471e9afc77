"""The ML service on Kafka: the Batch job's image as a long-running ECS Fargate service.

An ECS cluster (Fargate, Container Insights on), a task definition whose environment names the
routing parameter, the RDS Proxy endpoint, the database and user and the consumer group, a task
role (Kafka consumer policy, plus whatever the stack grants: ``rds-db:connect``, read access to
the routing parameter), an execution role scoped to the image's repository and the log group,
a service in the private subnets behind an egress-only security group, and target-tracking auto
scaling: on consumer lag per task where the stack wires it (provisioned clusters), with a CPU
policy beside it as the backstop, on CPU alone otherwise (serverless).

MSK emits consumer-lag metrics only while the group is STABLE or EMPTY (Amazon MSK Developer
Guide, consumer lag), so during a rebalance the lag policy sees no data and does nothing. With
several target-tracking policies, Application Auto Scaling scales out when any policy asks and
in only when all agree, so the CPU policy keeps working while lag is blind and never fights it.

The service's mode (verify / primary) is read from the routing parameter at run time, so the
task definition is the same in every phase: a phase change never redeploys the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_aws as aws

from components.autoscaling import target_tracking_policy
from components.container_roles import ecs_tasks_role, task_execution_role
from components.iam import policy_document, put_metrics_statement
from components.security_groups import Rule, worker_security_group
from jobstream.contract.metrics import NAMESPACE as METRICS_NAMESPACE

CONTAINER_NAME = "consumer"
STOP_TIMEOUT_SECONDS = 120
"""Time between SIGTERM and SIGKILL: enough to finish the job in hand and commit its offset."""
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300


class ScalingMetric(StrEnum):
    CONSUMER_LAG = "consumer-lag"
    """Offset lag of the group divided by the running tasks (MSK provisioned publishes lag)."""
    CPU = "cpu"


@dataclass(frozen=True)
class ConsumerServiceArgs:
    cluster_name: str
    service_name: str
    image: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    environment: Mapping[str, pulumi.Input[str]]
    """The worker's environment (``jobstream.contract.env.service_environment``)."""
    kafka_consumer_policy: pulumi.Input[str]
    database_security_group_id: pulumi.Input[str]
    log_group_name: str
    log_retention_days: int
    cpu: int
    memory_mib: int
    desired_count: int
    min_count: int
    max_count: int
    scaling_metric: ScalingMetric
    lag_target_per_task: int
    cpu_target_percent: int
    kafka_cluster_name: str = ""
    consumer_group: str = ""
    topic: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


class ConsumerService(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    cluster_arn: pulumi.Output[str]
    service_name: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ConsumerServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:consumer:ConsumerService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.scaling_metric is ScalingMetric.CONSUMER_LAG and not (
            args.kafka_cluster_name and args.consumer_group and args.topic
        ):
            raise ValueError("lag scaling needs kafka_cluster_name, consumer_group and topic")

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=args.log_group_name,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id

        execution_role = task_execution_role(
            self,
            f"{name}-execution",
            account=account,
            image=args.image,
            log_group_arn=log_group.arn,
        )
        # Task role: what the consumer itself may do.
        task_role = ecs_tasks_role(self, f"{name}-task", account=account)
        aws.iam.RolePolicy(
            f"{name}-kafka", role=task_role.id, policy=args.kafka_consumer_policy, opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-metrics",
            role=task_role.id,
            policy=policy_document(self, [put_metrics_statement(METRICS_NAMESPACE)]),
            opts=child,
        )

        sg = worker_security_group(
            self,
            f"{name}-tasks",
            vpc_id=args.vpc_id,
            description=f"{args.service_name}: ML consumer tasks (egress only)",
            tag_name=f"{args.service_name}-tasks",
            https=Rule(f"{name}-https", "HTTPS to AWS APIs (endpoints or NAT)"),
            postgres=Rule(f"{name}-db", "PostgreSQL to the RDS Proxy"),
            proxy_security_group_id=args.database_security_group_id,
        )

        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        container = {
            "name": CONTAINER_NAME,
            "image": args.image,
            "essential": True,
            "readonlyRootFilesystem": True,
            "stopTimeout": STOP_TIMEOUT_SECONDS,
            "environment": [
                {"name": key, "value": value} for key, value in sorted(args.environment.items())
            ],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group.name,
                    "awslogs-region": region,
                    "awslogs-stream-prefix": CONTAINER_NAME,
                },
            },
        }
        task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=args.service_name,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(args.cpu),
            memory=str(args.memory_mib),
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=child,
        )
        service = aws.ecs.Service(
            f"{name}-service",
            name=args.service_name,
            cluster=cluster.arn,
            task_definition=task_definition.arn,
            launch_type="FARGATE",
            desired_count=args.desired_count,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(args.subnet_ids), security_groups=[sg.id], assign_public_ip=False
            ),
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            tags=dict(args.tags),
            # Auto scaling owns the running count after the first deploy.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCount"]),
        )

        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=args.min_count,
            max_capacity=args.max_count,
            opts=child,
        )
        target_tracking_policy(
            self,
            f"{name}-scaling",
            policy_name=f"{args.service_name}-{args.scaling_metric.value}",
            target=target,
            configuration=_tracking(args),
        )
        if args.scaling_metric is ScalingMetric.CONSUMER_LAG:
            # The backstop while lag is missing (rebalances): see the module docstring.
            target_tracking_policy(
                self,
                f"{name}-scaling-cpu",
                policy_name=f"{args.service_name}-{ScalingMetric.CPU.value}",
                target=target,
                configuration=_cpu_tracking(args),
            )

        self.security_group_id = sg.id
        self.task_role = task_role
        self.execution_role = execution_role
        self.cluster_arn = cluster.arn
        self.service_name = service.name
        self.task_definition_arn = task_definition.arn
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "clusterArn": cluster.arn,
                "serviceName": service.name,
                "taskDefinitionArn": task_definition.arn,
                "securityGroupId": sg.id,
                "taskRoleArn": task_role.arn,
            }
        )


_Tracking = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs
_Custom = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs
_Metric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs
_Stat = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatArgs
_StatMetric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricArgs
_Dimension = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArgs
_Predefined = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs


def _cpu_tracking(args: ConsumerServiceArgs) -> _Tracking:
    return _Tracking(
        target_value=args.cpu_target_percent,
        predefined_metric_specification=_Predefined(
            predefined_metric_type="ECSServiceAverageCPUUtilization"
        ),
        scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
        scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
    )


def _tracking(args: ConsumerServiceArgs) -> _Tracking:
    if args.scaling_metric is ScalingMetric.CPU:
        return _cpu_tracking(args)

    def metric(id_: str, namespace: str, metric_name: str, dims: Mapping[str, str]) -> _Metric:
        return _Metric(
            id=id_,
            return_data=False,
            metric_stat=_Stat(
                stat="Maximum" if namespace == "AWS/Kafka" else "Average",
                metric=_StatMetric(
                    namespace=namespace,
                    metric_name=metric_name,
                    dimensions=[_Dimension(name=k, value=v) for k, v in dims.items()],
                ),
            ),
        )

    lag = metric(
        "lag",
        "AWS/Kafka",
        "SumOffsetLag",
        {
            "Cluster Name": args.kafka_cluster_name,
            "Consumer Group": args.consumer_group,
            "Topic": args.topic,
        },
    )
    tasks = metric(
        "tasks",
        "ECS/ContainerInsights",
        "RunningTaskCount",
        {"ClusterName": args.cluster_name, "ServiceName": args.service_name},
    )
    per_task = _Metric(
        id="lag_per_task",
        label="Consumer offset lag per running task",
        expression="IF(tasks > 0, lag / tasks, lag)",
        return_data=True,
    )
    return _Tracking(
        target_value=args.lag_target_per_task,
        customized_metric_specification=_Custom(metrics=[lag, tasks, per_task]),
        scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
        scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
    )
