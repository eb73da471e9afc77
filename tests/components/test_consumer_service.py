"""The Kafka consumer service on ECS Fargate, checked through the offline plan."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.container_roles import ecr_repository_arn
from infra import mocks
from infra.mocks import ACCOUNT_ID
from infra.plan import Plan, PlannedResource, PlanSet
from jobstream.contract.names import Names

SERVICE = "aws:ecs/service:Service"
ECS_CLUSTER = "aws:ecs/cluster:Cluster"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"

TASK_ROLE = "consumer-task"


def consumer_children(plan: Plan) -> list[PlannedResource]:
    return [r for r in plan.resources if r.parent and r.parent.endswith("::consumer")]


def one_child(plan: Plan, type_: str) -> PlannedResource:
    found = [r for r in consumer_children(plan) if r.type == type_]
    assert len(found) == 1, f"expected one {type_} in the consumer service, found {len(found)}"
    return found[0]


def container(plan: Plan) -> dict[str, Any]:
    (definition,) = json.loads(plan.one(TASK_DEFINITION).inputs["containerDefinitions"])
    return definition


def sg_id(logical: str) -> str:
    return f"sg-{mocks._digest(logical, length=17)}"  # pyright: ignore[reportPrivateUsage]


def statements(policy_json: str) -> list[dict[str, Any]]:
    body = json.loads(policy_json)["Statement"]
    return body if isinstance(body, list) else [body]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def dev3(plans: PlanSet) -> Plan:
    return plans.get("dev", 3)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_service_exists_from_phase_3(plans: PlanSet, stack: str) -> None:
    present = {n for n in (1, 2, 3, 4, 5) if plans.get(stack, n).of_type(SERVICE)}
    assert present == {3, 4, 5}


def test_cluster_runs_with_container_insights(dev3: Plan) -> None:
    cluster = dev3.one(ECS_CLUSTER)
    assert cluster.inputs["name"] == Names("dev").ecs_cluster
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]


def test_task_runs_the_batch_image_with_the_routing_and_database_environment(dev3: Plan) -> None:
    c = container(dev3)
    assert c["image"] == dev3.config.batch.image, "the consumer must run the Batch job's image"
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env == {
        "JOBSTREAM_CONSUMER": "kafka",
        "JOBSTREAM_STACK": "dev",
        "AWS_DEFAULT_REGION": "us-east-1",
        "JOBSTREAM_ROUTING_PARAMETER": "/jobstream/dev/routing",
        "JOBSTREAM_DB_HOST": dev3.outputs["dbProxyEndpoint"],
        "JOBSTREAM_DB_PORT": "5432",
        "JOBSTREAM_DB_NAME": "jobstream",
        "JOBSTREAM_DB_USER": "jobstream_app",
        "JOBSTREAM_DB_SSLMODE": "verify-full",
        "JOBSTREAM_DB_SSLROOTCERT": "system",
        "JOBSTREAM_KAFKA_MAX_POLL_INTERVAL_MS": "1920000",  # jobTimeoutSeconds 1800 + 120 s
    }


def test_a_job_may_take_its_whole_timeout_before_the_group_reassigns_its_partition(
    plans: PlanSet,
) -> None:
    """librdkafka's max.poll.interval.ms (default 300000): a consumer that does not poll again
    within it leaves the group, its partitions go to another task, which processes the message
    again, and its own commit fails (CONFIGURATION.md). One job may take jobTimeoutSeconds, the
    Batch attempt timeout that bounds the same handler on Batch."""
    overrides = {
        "jobstream:jobTimeoutSeconds": "7200",
        "jobstream:queueVisibilityTimeoutSeconds": "7200",
    }
    plan = plans.get("dev", 3, overrides=overrides)
    env = {e["name"]: e["value"] for e in container(plan)["environment"]}
    poll = int(env["JOBSTREAM_KAFKA_MAX_POLL_INTERVAL_MS"])
    assert poll >= 7200 * 1000, f"{TASK_DEFINITION} consumer: {poll} ms is under the job timeout"


def test_task_definition_is_fargate_sized_from_config(dev3: Plan) -> None:
    td = dev3.one(TASK_DEFINITION)
    assert td.inputs["requiresCompatibilities"] == ["FARGATE"]
    assert td.inputs["networkMode"] == "awsvpc"
    assert (td.inputs["cpu"], td.inputs["memory"]) == (
        str(dev3.config.consumer.cpu),
        str(dev3.config.consumer.memory_mib),
    )
    assert td.inputs["taskRoleArn"].endswith(f":role/{TASK_ROLE}")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_task_definition_and_service_do_not_change_between_verify_and_primary(
    plans: PlanSet, stack: str
) -> None:
    # The mode comes from the routing parameter at run time; a phase change never redeploys.
    verify, primary = plans.get(stack, 3), plans.get(stack, 4)
    for type_ in (TASK_DEFINITION, SERVICE):
        a, b = verify.one(type_), primary.one(type_)
        assert a.urn == b.urn and a.inputs == b.inputs, f"{a.urn} changes between phases 3 and 4"


def test_logs_go_to_a_log_group_with_retention(dev3: Plan) -> None:
    group = one_child(dev3, LOG_GROUP)
    assert group.inputs["name"] == "/jobstream/dev/consumer"
    assert group.inputs["retentionInDays"] == dev3.config.log_retention_days
    options = container(dev3)["logConfiguration"]["options"]
    assert options["awslogs-group"] == group.inputs["name"]


def test_service_runs_in_private_subnets_without_public_ip(dev3: Plan) -> None:
    service = dev3.one(SERVICE)
    network = service.inputs["networkConfiguration"]
    assert network["subnets"] == dev3.outputs["privateSubnetIds"], service.urn
    assert network["assignPublicIp"] is False, service.urn
    assert network["securityGroups"] == [sg_id("consumer-tasks")], service.urn
    assert service.inputs["desiredCount"] == dev3.config.consumer.desired_count
    assert service.inputs["launchType"] == "FARGATE"


def test_security_group_is_egress_only(dev3: Plan) -> None:
    group = sg_id("consumer-tasks")
    ingress = [r.urn for r in dev3.of_type(INGRESS) if r.inputs["securityGroupId"] == group]
    assert ingress == [], f"nothing may connect to the consumer tasks: {ingress}"
    egress = {
        (r.inputs["fromPort"], r.inputs.get("cidrIpv4") or "sg")
        for r in dev3.of_type(EGRESS)
        if r.inputs["securityGroupId"] == group
    }
    assert egress == {(443, "0.0.0.0/0"), (5432, "sg"), (9098, "sg")}


def test_database_proxy_and_brokers_admit_the_consumer(dev3: Plan) -> None:
    admitted = [
        r
        for r in dev3.of_type(INGRESS)
        if r.inputs.get("referencedSecurityGroupId") == sg_id("consumer-tasks")
    ]
    assert {r.inputs["fromPort"] for r in admitted} == {5432, 9098}


def task_role_policies(plan: Plan) -> dict[str, str]:
    return {
        r.name: r.inputs["policy"]
        for r in plan.of_type(ROLE_POLICY)
        if r.inputs["role"] == TASK_ROLE
    }


def test_task_role_holds_kafka_consume_db_connect_routing_read_and_metrics_only(dev3: Plan) -> None:
    policies = task_role_policies(dev3)
    assert set(policies) == {
        "consumer-kafka",
        "consumer-metrics",
        "database-connect-consumer",
        "routing-read-consumer",
    }, f"unexpected policies on the task role: {sorted(policies)}"
    (metrics,) = statements(policies["consumer-metrics"])
    assert as_list(metrics["Action"]) == ["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Jobstream"}}
    (connect,) = statements(policies["database-connect-consumer"])
    assert as_list(connect["Action"]) == ["rds-db:connect"]
    assert as_list(connect["Resource"])[0].endswith("/jobstream_app")
    (read,) = statements(policies["routing-read-consumer"])
    assert as_list(read["Action"]) == ["ssm:GetParameter"]
    assert as_list(read["Resource"]) == [
        f"arn:aws:ssm:us-east-1:{ACCOUNT_ID}:parameter/jobstream/dev/routing"
    ]


def test_execution_role_pulls_only_from_the_images_repository(dev3: Plan) -> None:
    policy = dev3.one(ROLE_POLICY, "consumer-execution")
    by_sid = {st["Sid"]: st for st in statements(policy.inputs["policy"])}
    assert as_list(by_sid["PullImage"]["Resource"]) == [
        f"arn:aws:ecr:us-east-1:{ACCOUNT_ID}:repository/jobstream-ml"
    ]
    assert as_list(by_sid["RegistryLogin"]["Action"]) == ["ecr:GetAuthorizationToken"]
    assert as_list(by_sid["WriteLogs"]["Resource"])[0].endswith(
        "log-group:/jobstream/dev/consumer:log-stream:*"
    )


def test_ecr_repository_arn_understands_ecr_references_only() -> None:
    assert (
        ecr_repository_arn(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/ml@sha256:" + "a" * 64
        )
        == "arn:aws:ecr:eu-west-1:123456789012:repository/team/ml"
    )
    assert ecr_repository_arn("ghcr.io/acme/ml:1.0") is None


def scaling_policies(plan: Plan) -> dict[str, PlannedResource]:
    """The service's scaling policies by logical name."""
    return {r.name: r for r in consumer_children(plan) if r.type == SCALING_POLICY}


def tracking(plan: Plan, logical: str = "consumer-scaling") -> dict[str, Any]:
    return scaling_policies(plan)[logical].inputs["targetTrackingScalingPolicyConfiguration"]


def test_service_scales_between_the_configured_bounds(dev3: Plan) -> None:
    target = one_child(dev3, SCALING_TARGET)
    c = dev3.config.consumer
    assert (
        target.inputs["resourceId"] == "service/jobstream-dev-consumers/jobstream-dev-ml-consumer"
    )
    assert target.inputs["scalableDimension"] == "ecs:service:DesiredCount"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (
        c.min_count,
        c.max_count,
    )


def test_provisioned_cluster_scales_on_consumer_lag_per_task(dev3: Plan) -> None:
    spec = tracking(dev3)
    assert spec["targetValue"] == dev3.config.consumer.lag_target_per_task
    metrics = {m["id"]: m for m in spec["customizedMetricSpecification"]["metrics"]}
    lag = metrics["lag"]["metricStat"]["metric"]
    assert (lag["namespace"], lag["metricName"]) == ("AWS/Kafka", "SumOffsetLag")
    dims = {d["name"]: d["value"] for d in lag["dimensions"]}
    assert dims == {
        "Cluster Name": "jobstream-dev-kafka",
        "Consumer Group": "jobstream-ml",
        "Topic": "jobstream.jobs",
    }
    returned = [m for m in metrics.values() if m.get("returnData")]
    assert [m["id"] for m in returned] == ["lag_per_task"]
    assert "lag / tasks" in returned[0]["expression"]


def test_serverless_cluster_scales_on_cpu(plans: PlanSet) -> None:
    plan = plans.get(
        "dev", phase=3, overrides={"jobstream:kafkaMode": "serverless", "jobstream:kafka": "kafka"}
    )
    spec = tracking(plan)
    assert spec["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    assert spec["targetValue"] == plan.config.consumer.cpu_target_percent
    assert "customizedMetricSpecification" not in spec


def test_lag_scaling_has_a_cpu_target_tracking_backstop(dev3: Plan) -> None:
    """Issue 12 defect 7. "Consumer lag metrics are emitted only if a consumer group is in a
    STABLE or EMPTY state" (Amazon MSK Developer Guide, consumer lag): during a rebalance the
    lag policy has no data. A second target-tracking policy on CPU keeps scaling out (with
    several policies Application Auto Scaling scales out if any asks, in only if all agree)."""
    policies = scaling_policies(dev3)
    assert set(policies) == {"consumer-scaling", "consumer-scaling-cpu"}, sorted(policies)
    cpu = policies["consumer-scaling-cpu"]
    spec = cpu.inputs["targetTrackingScalingPolicyConfiguration"]
    assert spec["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ECSServiceAverageCPUUtilization"
    }, cpu.urn
    assert spec["targetValue"] == dev3.config.consumer.cpu_target_percent, cpu.urn
    lag = policies["consumer-scaling"]
    assert cpu.inputs["resourceId"] == lag.inputs["resourceId"], cpu.urn
    assert cpu.inputs["name"] != lag.inputs["name"], cpu.urn


def test_serverless_cluster_has_the_cpu_policy_only(plans: PlanSet) -> None:
    plan = plans.get(
        "dev", phase=3, overrides={"jobstream:kafkaMode": "serverless", "jobstream:kafka": "kafka"}
    )
    assert set(scaling_policies(plan)) == {"consumer-scaling"}
