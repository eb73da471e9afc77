"""The MSK component, checked through the offline plan of the real program (dev and prod)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from components.kafka import (
    IAM_PORT,
    STORAGE_DIMENSION,
    STORAGE_METRIC,
    VOLUME_SIZE_PATH,
    server_properties,
)
from infra import mocks
from infra.mocks import ACCOUNT_ID
from infra.plan import Plan, PlannedResource, PlanSet, RecordingMonitor, run_plan

CLUSTER = "aws:msk/cluster:Cluster"
SERVERLESS = "aws:msk/serverlessCluster:ServerlessCluster"
CONFIGURATION = "aws:msk/configuration:Configuration"
MSK_TOPIC = "aws:msk/topic:Topic"
KAFKA_TOPIC = "kafka:index/topic:Topic"
KAFKA_PROVIDER = "pulumi:providers:kafka"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
KMS_KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"

DEV_CLUSTER = "jobstream-dev-kafka"


def kafka_children(plan: Plan) -> list[PlannedResource]:
    return [r for r in plan.resources if r.parent and r.parent.endswith("::kafka")]


def server_props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip())
    return {k.strip(): v.strip() for k, v in pairs}


def topic_tuples(plan: Plan) -> set[tuple[str, int, int, str]]:
    """(name, partitions, replication factor, config JSON) of every topic, whichever manager."""
    out: set[tuple[str, int, int, str]] = set()
    for r in plan.of_type(MSK_TOPIC):
        config = json.loads(r.inputs["configs"])
        out.add(
            (
                r.inputs["name"],
                r.inputs["partitionCount"],
                r.inputs["replicationFactor"],
                json.dumps(config, sort_keys=True),
            )
        )
    for r in plan.of_type(KAFKA_TOPIC):
        out.add(
            (
                r.inputs["name"],
                r.inputs["partitions"],
                r.inputs["replicationFactor"],
                json.dumps(r.inputs["config"], sort_keys=True),
            )
        )
    return out


def statements(policy_json: str) -> Iterator[Mapping[str, Any]]:
    document = json.loads(policy_json)
    body = document["Statement"]
    yield from body if isinstance(body, list) else [body]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def dev3(plans: PlanSet) -> Plan:
    return plans.get("dev", 3)


# ---- the provisioned cluster ---------------------------------------------------------------


def test_cluster_uses_tls_in_transit_and_inside_the_cluster(dev3: Plan) -> None:
    cluster = dev3.one(CLUSTER)
    transit = cluster.inputs["encryptionInfo"]["encryptionInTransit"]
    assert transit == {"clientBroker": "TLS", "inCluster": True}, (
        f"{cluster.urn}: brokers must speak TLS only, to clients and to each other"
    )


def test_cluster_authenticates_clients_with_iam_only(dev3: Plan) -> None:
    cluster = dev3.one(CLUSTER)
    auth = cluster.inputs["clientAuthentication"]
    assert auth["sasl"] == {"iam": True, "scram": False}, f"{cluster.urn}: SASL must be IAM only"
    assert auth["unauthenticated"] is False, f"{cluster.urn}: unauthenticated access is on"
    assert "tls" not in auth, f"{cluster.urn}: mutual-TLS client auth is not wanted"


def test_cluster_encrypts_at_rest_with_its_own_kms_key(dev3: Plan) -> None:
    cluster = dev3.one(CLUSTER)
    keys = [r for r in kafka_children(dev3) if r.type == KMS_KEY]
    assert len(keys) == 1, f"{cluster.urn}: expected one KMS key in the Kafka component"
    key_arn = cluster.inputs["encryptionInfo"]["encryptionAtRestKmsKeyArn"]
    assert key_arn.startswith(f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/"), key_arn
    assert keys[0].urn in cluster.dependencies, f"{cluster.urn} does not use {keys[0].urn}"
    assert keys[0].inputs["enableKeyRotation"] is True


def test_cluster_size_and_broker_type_come_from_config(plans: PlanSet) -> None:
    for stack, brokers, instance, azs in (
        ("dev", 2, "kafka.t3.small", 2),
        ("prod", 3, "kafka.m7g.large", 3),
    ):
        cluster = plans.get(stack, 2).one(CLUSTER)
        group = cluster.inputs["brokerNodeGroupInfo"]
        assert cluster.inputs["numberOfBrokerNodes"] == brokers, cluster.urn
        assert group["instanceType"] == instance, cluster.urn
        subnets = plans.get(stack, 2).outputs["privateSubnetIds"]
        assert group["clientSubnets"] == subnets, f"{cluster.urn}: brokers not in private subnets"
        assert len(set(group["clientSubnets"])) == azs, f"{cluster.urn}: brokers not spread"


def test_broker_logs_go_to_a_log_group_with_retention(dev3: Plan) -> None:
    cluster = dev3.one(CLUSTER)
    logs = cluster.inputs["loggingInfo"]["brokerLogs"]["cloudwatchLogs"]
    group = next(r for r in kafka_children(dev3) if r.type == LOG_GROUP)
    assert logs == {"enabled": True, "logGroup": group.inputs["name"]}, cluster.urn
    assert group.inputs["retentionInDays"] == dev3.config.log_retention_days == 14


def test_enhanced_monitoring_level_comes_from_config(plans: PlanSet) -> None:
    plan = plans.get("dev", phase=2, overrides={"jobstream:kafkaEnhancedMonitoring": "PER_BROKER"})
    assert plan.one(CLUSTER).inputs["enhancedMonitoring"] == "PER_BROKER"


# ---- the configuration -------------------------------------------------------------------------


def test_configuration_sets_the_broker_defaults(dev3: Plan) -> None:
    configuration = dev3.one(CONFIGURATION)
    props = server_props(configuration.inputs["serverProperties"])
    k = dev3.config.kafka
    expected = {
        "auto.create.topics.enable": "false",
        "default.replication.factor": str(k.replication_factor),
        "min.insync.replicas": str(k.min_insync_replicas),
        "num.partitions": str(k.topic_partitions),
        "log.retention.hours": str(k.topic_retention_hours),
    }
    for key, value in expected.items():
        assert props.get(key) == value, f"{configuration.urn}: {key} should be {value}"


def test_configuration_has_no_input_that_forces_replacement(dev3: Plan) -> None:
    # name and kafkaVersions force a new configuration (and "configuration is in use" when the
    # old one is deleted); serverProperties and description update in place = new revision.
    configuration = dev3.one(CONFIGURATION)
    assert set(configuration.inputs) <= {"name", "description", "serverProperties"}, (
        f"{configuration.urn}: unexpected inputs {sorted(configuration.inputs)}"
    )
    assert configuration.inputs["name"] == f"{DEV_CLUSTER}-config"


def test_changing_a_broker_property_updates_the_same_configuration_in_place(
    plans: PlanSet,
    dev3: Plan,
) -> None:
    changed = plans.get("dev", phase=3, overrides={"jobstream:topicRetentionHours": "72"})
    before, after = dev3.one(CONFIGURATION), changed.one(CONFIGURATION)
    assert before.urn == after.urn
    assert before.inputs["name"] == after.inputs["name"], "the configuration name must be stable"
    assert server_props(after.inputs["serverProperties"])["log.retention.hours"] == "72"
    differing = {k for k in before.inputs if before.inputs[k] != after.inputs[k]}
    assert differing == {"serverProperties"}, f"{after.urn}: also changed {differing}"
    assert dev3.one(CLUSTER).inputs == changed.one(CLUSTER).inputs, (
        "the cluster's own inputs must not change; it follows the configuration revision"
    )


@pytest.mark.fresh_evaluations  # it changes the mocks
def test_cluster_applies_the_configurations_latest_revision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = dict(mocks._EXTRA_OUTPUTS)  # pyright: ignore[reportPrivateUsage]
    extra[CONFIGURATION] = lambda _m, _n, _i: {"latestRevision": 7}
    monkeypatch.setattr(mocks, "_EXTRA_OUTPUTS", extra)
    plan = run_plan("dev", phase=2)
    cluster, configuration = plan.one(CLUSTER), plan.one(CONFIGURATION)
    info = cluster.inputs["configurationInfo"]
    assert info["revision"] == 7, f"{cluster.urn}: revision not taken from latestRevision"
    assert info["arn"].startswith(f"arn:aws:kafka:us-east-1:{ACCOUNT_ID}:configuration/")
    assert configuration.urn in cluster.dependencies


def test_server_properties_renders_one_property_per_line() -> None:
    text = server_properties(
        partitions=6, replication_factor=3, min_insync_replicas=2, retention_hours=24
    )
    assert text.endswith("\n")
    assert server_props(text)["default.replication.factor"] == "3"
    assert len(text.splitlines()) == len(server_props(text))


# ---- storage auto scaling ------------------------------------------------------------------------


def test_storage_auto_scaling_tracks_broker_storage_utilisation(dev3: Plan) -> None:
    cluster = dev3.one(CLUSTER)
    target = next(r for r in kafka_children(dev3) if r.type == SCALING_TARGET)
    policy = next(r for r in kafka_children(dev3) if r.type == SCALING_POLICY)
    cluster_arn = dev3.outputs["clusterArn"]
    assert target.inputs["serviceNamespace"] == "kafka"
    assert target.inputs["scalableDimension"] == STORAGE_DIMENSION
    assert target.inputs["resourceId"] == cluster_arn, f"{target.urn}: not this cluster"
    assert target.inputs["maxCapacity"] == dev3.config.kafka.max_volume_size_gb == 100
    tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"] == {"predefinedMetricType": STORAGE_METRIC}
    assert tracking["targetValue"] == dev3.config.kafka.storage_target_percent
    assert tracking["disableScaleIn"] is True, f"{policy.urn}: MSK storage cannot shrink"
    assert policy.inputs["resourceId"] == cluster_arn
    assert cluster.inputs["brokerNodeGroupInfo"]["storageInfo"]["ebsStorageInfo"] == {
        "volumeSize": 20
    }


@pytest.mark.fresh_evaluations  # it watches the evaluation
def test_cluster_ignores_the_volume_size_that_the_scaler_owns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, list[str]] = {}
    original = RecordingMonitor.RegisterResource

    def spy(self: RecordingMonitor, request: Any) -> Any:
        seen[f"{request.type}::{request.name}"] = list(request.ignoreChanges)
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", spy)
    run_plan("dev", phase=2)
    assert seen[f"{CLUSTER}::kafka"] == [VOLUME_SIZE_PATH], (
        f"the cluster must ignore {VOLUME_SIZE_PATH}, or every update shrinks it back"
    )


# ---- network access ------------------------------------------------------------------------------


def broker_sg(plan: Plan) -> PlannedResource:
    return next(r for r in kafka_children(plan) if r.type == SG)


def test_broker_security_group_has_no_inline_rules(dev3: Plan) -> None:
    sg = broker_sg(dev3)
    assert not sg.inputs.get("ingress") and not sg.inputs.get("egress"), sg.urn


PRODUCER_SG = "sg-0123456789abcdef0"


@pytest.mark.parametrize(("phase", "clients"), [(2, set()), (3, {"consumer"}), (5, {"consumer"})])
def test_brokers_admit_9098_only_from_client_security_groups(
    plans: PlanSet, phase: int, clients: set[str]
) -> None:
    plan = plans.get("dev", phase)
    sg_id = f"sg-{mocks._digest(broker_sg(plan).name, length=17)}"  # pyright: ignore[reportPrivateUsage]
    rules = [r for r in plan.of_type(INGRESS) if r.inputs["securityGroupId"] == sg_id]
    assert {r.name.removeprefix("kafka-from-") for r in rules} == clients
    for rule in rules:
        assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (IAM_PORT, IAM_PORT), rule.urn
        assert rule.inputs["ipProtocol"] == "tcp", rule.urn
        assert "cidrIpv4" not in rule.inputs and "cidrIpv6" not in rule.inputs, (
            f"{rule.urn}: the brokers admit security groups, never address ranges"
        )
        assert rule.inputs["referencedSecurityGroupId"].startswith("sg-"), rule.urn
    egress = [r for r in plan.of_type(EGRESS) if r.inputs.get("referencedSecurityGroupId") == sg_id]
    assert {r.name.removeprefix("kafka-egress-") for r in egress} == clients, (
        "every admitted client needs its matching egress rule to the brokers"
    )


def test_producer_security_groups_are_admitted_without_touching_their_egress(
    plans: PlanSet,
) -> None:
    plan = plans.get(
        "dev", phase=2, overrides={"jobstream:producerSecurityGroupIds": f'["{PRODUCER_SG}"]'}
    )
    (rule,) = [r for r in plan.of_type(INGRESS) if r.name == "kafka-from-producer-0"]
    assert rule.inputs["referencedSecurityGroupId"] == PRODUCER_SG, rule.urn
    assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (IAM_PORT, IAM_PORT), rule.urn
    egress = [r for r in plan.of_type(EGRESS) if r.inputs["securityGroupId"] == PRODUCER_SG]
    assert egress == [], "the producers' security groups belong to another stack"


def test_batch_jobs_get_no_kafka_access(plans: PlanSet) -> None:
    plan = plans.get("dev", 3)
    kafka_grants = [r for r in plan.resources if "batch" in r.name and "kafka" in r.name]
    assert kafka_grants == [], [r.urn for r in kafka_grants]


def test_the_cluster_does_not_depend_on_its_clients(plans: PlanSet) -> None:
    # Clients come and go by separate rule resources: the cluster's inputs are the same
    # whether the Batch jobs and the consumer service exist or not.
    assert plans.get("dev", 2).one(CLUSTER).inputs == plans.get("dev", 5).one(CLUSTER).inputs


# ---- IAM policy documents ------------------------------------------------------------------------


def arns(plan: Plan) -> tuple[str, str, str, str]:
    cluster_arn = plan.outputs["clusterArn"]
    uuid = cluster_arn.rsplit("/", 1)[1]
    base = f"arn:aws:kafka:us-east-1:{ACCOUNT_ID}"
    return (
        cluster_arn,
        f"{base}:topic/{DEV_CLUSTER}/{uuid}/jobstream.jobs",
        f"{base}:topic/{DEV_CLUSTER}/{uuid}/jobstream.jobs.dlq",
        f"{base}:group/{DEV_CLUSTER}/{uuid}/jobstream-ml",
    )


def grants(policy_json: str) -> dict[str, set[str]]:
    """resource ARN -> actions allowed on it."""
    out: dict[str, set[str]] = {}
    for st in statements(policy_json):
        assert st["Effect"] == "Allow"
        for resource in as_list(st["Resource"]):
            out.setdefault(resource, set()).update(as_list(st["Action"]))
    return out


def test_producer_policy_is_scoped_to_this_cluster_and_the_jobs_topic(dev3: Plan) -> None:
    cluster_arn, jobs, _dlq, _group = arns(dev3)
    policy = dev3.one("aws:iam/policy:Policy", "producers")
    kafka_grants = {
        arn: actions
        for arn, actions in grants(policy.inputs["policy"]).items()
        if arn.startswith("arn:aws:kafka:")
    }
    assert kafka_grants == {
        cluster_arn: {
            "kafka-cluster:Connect",
            "kafka-cluster:DescribeCluster",
            "kafka-cluster:WriteDataIdempotently",
        },
        jobs: {"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"},
    }


def test_consumer_policy_reads_jobs_writes_dead_letters_and_owns_its_group(dev3: Plan) -> None:
    """The consumer parks jobs with an idempotent producer (``producer_config``): with WriteData
    granted on the dead-letter topic alone, MSK IAM also needs WriteDataIdempotently on the
    cluster (MSK Developer Guide, "Create authorization policies for the IAM role": for Kafka
    2.8.0 and later it is not granted by WriteData on one topic)."""
    cluster_arn, jobs, dlq, group = arns(dev3)
    policy = dev3.one(ROLE_POLICY, "consumer-kafka")
    assert policy.inputs["role"] == "consumer-task", f"{policy.urn}: not the ECS task role"
    assert grants(policy.inputs["policy"]) == {
        cluster_arn: {
            "kafka-cluster:Connect",
            "kafka-cluster:DescribeCluster",
            "kafka-cluster:WriteDataIdempotently",
        },
        jobs: {"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"},
        dlq: {"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"},
        group: {"kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"},
    }


# ---- topics --------------------------------------------------------------------------------------


def test_jobs_and_dead_letter_topics_follow_config(dev3: Plan) -> None:
    k = dev3.config.kafka
    hour = 3_600_000
    assert topic_tuples(dev3) == {
        (
            k.topic_name,
            k.topic_partitions,
            k.replication_factor,
            json.dumps(
                {
                    "cleanup.policy": "delete",
                    "min.insync.replicas": str(k.min_insync_replicas),
                    "retention.ms": str(k.topic_retention_hours * hour),
                },
                sort_keys=True,
            ),
        ),
        (
            k.dead_letter_topic_name,
            1,
            k.replication_factor,
            json.dumps(
                {
                    "cleanup.policy": "delete",
                    "min.insync.replicas": str(k.min_insync_replicas),
                    "retention.ms": str(k.dead_letter_retention_hours * hour),
                },
                sort_keys=True,
            ),
        ),
    }


def test_aws_topic_manager_creates_topics_through_the_control_plane(dev3: Plan) -> None:
    assert dev3.config.kafka.topic_manager.value == "aws"
    topics = dev3.of_type(MSK_TOPIC)
    assert len(topics) == 2 and not dev3.of_type(KAFKA_TOPIC)
    for topic in topics:
        assert topic.inputs["clusterArn"] == dev3.outputs["clusterArn"], topic.urn
    assert not dev3.of_type(KAFKA_PROVIDER), "the aws manager needs no Kafka admin connection"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_same_config_gives_the_same_topics_under_either_manager(
    plans: PlanSet, stack: str
) -> None:
    under_aws = plans.get(stack, 3)
    under_kafka = plans.get(stack, phase=3, overrides={"jobstream:kafka": "kafka"})
    assert not under_kafka.of_type(MSK_TOPIC) and len(under_kafka.of_type(KAFKA_TOPIC)) == 2
    assert topic_tuples(under_aws) == topic_tuples(under_kafka)
    assert len(topic_tuples(under_aws)) == 2


@pytest.mark.fresh_evaluations  # it watches the evaluation
def test_kafka_topic_manager_connects_with_iam_over_tls_to_the_iam_brokers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers: dict[str, str] = {}
    original = RecordingMonitor.RegisterResource

    def spy(self: RecordingMonitor, request: Any) -> Any:
        providers[f"{request.type}::{request.name}"] = request.provider
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", spy)
    plan = run_plan("dev", phase=3, overrides={"jobstream:kafka": "kafka"})
    provider = plan.one(KAFKA_PROVIDER)
    servers = json.loads(provider.inputs["bootstrapServers"])
    assert servers == plan.outputs["bootstrapBrokers"].split(","), provider.urn
    assert all(s.endswith(f":{IAM_PORT}") for s in servers)
    assert provider.inputs["tlsEnabled"] == "true", f"{provider.urn}: TLS off"
    assert provider.inputs["saslMechanism"] == "aws-iam", provider.urn
    assert provider.inputs["saslAwsRegion"] == "us-east-1", provider.urn
    for topic in plan.of_type(KAFKA_TOPIC):
        used = providers[f"{KAFKA_TOPIC}::{topic.name}"]
        assert used.startswith(provider.urn + "::"), f"{topic.urn} does not use {provider.urn}"


# ---- serverless and protection -------------------------------------------------------------------


def test_serverless_mode_creates_an_iam_only_serverless_cluster(plans: PlanSet) -> None:
    plan = plans.get(
        "dev", phase=3, overrides={"jobstream:kafkaMode": "serverless", "jobstream:kafka": "kafka"}
    )
    cluster = plan.one(SERVERLESS)
    assert cluster.inputs["clientAuthentication"] == {"sasl": {"iam": {"enabled": True}}}
    (vpc,) = cluster.inputs["vpcConfigs"]
    assert vpc["subnetIds"] == plan.outputs["privateSubnetIds"]
    assert vpc["securityGroupIds"] == [f"sg-{mocks._digest(broker_sg(plan).name, length=17)}"]  # pyright: ignore[reportPrivateUsage]
    for absent in (CLUSTER, CONFIGURATION, SCALING_TARGET):
        assert not [r for r in kafka_children(plan) if r.type == absent], (
            f"serverless mode must not create {absent}"
        )
    assert plan.outputs["bootstrapBrokers"].endswith(f":{IAM_PORT}")
    # The MSK topic APIs do not exist for serverless: the topics come from pulumi-kafka.
    assert plan.of_type(MSK_TOPIC) == [] and len(plan.of_type(KAFKA_TOPIC)) == 2


def test_prod_protects_the_cluster_its_configuration_and_topics(plans: PlanSet) -> None:
    plan = plans.get("prod", 2)
    for r in [plan.one(CLUSTER), plan.one(CONFIGURATION), *plan.of_type(MSK_TOPIC)]:
        assert r.protect, f"{r.urn} must be protected in prod"


def test_dev_leaves_kafka_unprotected(dev3: Plan) -> None:
    protected = [r.urn for r in kafka_children(dev3) if r.protect]
    assert protected == [], f"dev protects {protected}"


def test_prod_protects_the_at_rest_key_like_the_cluster(plans: PlanSet) -> None:
    """Issue 12 defect 9: deleting the at-rest key makes the protected cluster unreadable."""
    plan = plans.get("prod", 2)
    key = plan.one("aws:kms/key:Key", "kafka-at-rest")
    assert plan.one(CLUSTER).protect, plan.one(CLUSTER).urn
    assert key.protect, f"{key.urn} encrypts a protected cluster but is not protected"
