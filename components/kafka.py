"""Amazon MSK: the cluster (provisioned or serverless), its configuration, storage auto scaling,
the jobs and dead-letter topics under either topic manager, and IAM policy documents.

Provisioned cluster: brokers spread over the private subnets, EBS storage grown by Application
Auto Scaling (Pulumi ignores the volume size so it never fights the scaler), encryption at rest
with a KMS key, TLS client<->broker and inside the cluster, SASL/IAM as the only client
authentication, broker logs in CloudWatch Logs, enhanced monitoring from config. The security
group admits the IAM/TLS port 9098 only from client security groups, each one a separate
ingress rule (``allow_client``) so the set of clients changes without touching the cluster.

The cluster configuration keeps one name for its lifetime: a change of ``server_properties`` is
an in-place update of the same ``aws.msk.Configuration`` (MSK records it as a new revision), and
the cluster follows through ``configuration_info.revision`` (an in-place UpdateClusterConfiguration).
Renaming or replacing the configuration instead would create a new one and then try to delete
the old one while the cluster still uses it, which MSK refuses ("configuration is in use").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kafka as kafka

from components.autoscaling import target_tracking_policy
from components.iam import policy_document
from components.kms import customer_managed_key
from components.security_groups import security_group, tcp_rule
from jobstream.contract.choices import EnhancedMonitoring, KafkaMode, TopicManager

IAM_PORT = 9098
"""MSK's port for SASL/IAM over TLS."""

STORAGE_DIMENSION = "kafka:broker-storage:VolumeSize"
STORAGE_METRIC = "KafkaBrokerStorageUtilization"
VOLUME_SIZE_PATH = "brokerNodeGroupInfo.storageInfo.ebsStorageInfo.volumeSize"
"""The cluster input that storage auto scaling owns; the cluster ignores changes to it."""

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    """One topic, independent of the manager that creates it."""

    key: str
    """Stable short name, used in logical resource names (``jobs``, ``dead-letter``)."""
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]


def topic_specs(
    *,
    topic_name: str,
    dead_letter_topic_name: str,
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int,
    retention_hours: int,
    dead_letter_retention_hours: int,
) -> tuple[TopicSpec, TopicSpec]:
    """The jobs topic and the dead-letter topic for poison messages (one partition is plenty:
    it holds only messages that failed every attempt)."""

    def config(hours: int) -> dict[str, str]:
        return {
            "cleanup.policy": "delete",
            "min.insync.replicas": str(min_insync_replicas),
            "retention.ms": str(hours * HOUR_MS),
        }

    jobs = TopicSpec("jobs", topic_name, partitions, replication_factor, config(retention_hours))
    dead = TopicSpec(
        "dead-letter",
        dead_letter_topic_name,
        1,
        replication_factor,
        config(dead_letter_retention_hours),
    )
    return jobs, dead


def server_properties(
    *, partitions: int, replication_factor: int, min_insync_replicas: int, retention_hours: int
) -> str:
    """The broker defaults (``server.properties``) of the cluster configuration."""
    props = {
        "auto.create.topics.enable": "false",
        "default.replication.factor": str(replication_factor),
        "min.insync.replicas": str(min_insync_replicas),
        "num.partitions": str(partitions),
        "log.retention.hours": str(retention_hours),
        "unclean.leader.election.enable": "false",
        "delete.topic.enable": "true",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


@dataclass(frozen=True)
class KafkaArgs:
    cluster_name: str
    mode: KafkaMode
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    topic_manager: TopicManager
    topics: Sequence[TopicSpec]
    consumer_group: str
    region: str
    kafka_version: str
    instance_type: str
    broker_count: int
    volume_size_gb: int
    max_volume_size_gb: int
    storage_target_percent: int
    enhanced_monitoring: EnhancedMonitoring
    log_retention_days: int
    protect: bool
    server_properties: str = ""
    log_group_name: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


class Kafka(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    cluster_name: str
    cluster_uuid: pulumi.Output[str]
    bootstrap_brokers: pulumi.Output[str]
    """The SASL/IAM (port 9098) bootstrap broker string, comma separated."""
    security_group_id: pulumi.Output[str]
    topic_name: str
    dead_letter_topic_name: str
    consumer_group: str
    producer_policy: pulumi.Output[str]
    consumer_policy: pulumi.Output[str]
    configuration_arn: pulumi.Output[str] | None
    configuration_revision: pulumi.Output[int] | None

    def __init__(
        self, name: str, args: KafkaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:kafka:Kafka", name, None, opts)
        if len(args.topics) < 2:
            raise ValueError("Kafka needs the jobs topic and the dead-letter topic")
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=args.protect)
        self.cluster_name = args.cluster_name
        self.consumer_group = args.consumer_group
        self.topic_name = args.topics[0].name
        self.dead_letter_topic_name = args.topics[1].name

        sg = security_group(
            self,
            f"{name}-brokers",
            vpc_id=args.vpc_id,
            description=f"{args.cluster_name}: Kafka IAM/TLS ({IAM_PORT}) from client groups only",
            tag_name=f"{args.cluster_name}-brokers",
        )
        self.security_group_id = sg.id

        self.configuration_arn = None
        self.configuration_revision = None
        if args.mode is KafkaMode.PROVISIONED:
            cluster = self._provisioned(name, args, sg, child, stateful)
            self.cluster_arn = cluster.arn
            self.cluster_uuid = cluster.cluster_uuid
            self.bootstrap_brokers = cluster.bootstrap_brokers_sasl_iam
        else:
            serverless = aws.msk.ServerlessCluster(
                name,
                cluster_name=args.cluster_name,
                client_authentication=aws.msk.ServerlessClusterClientAuthenticationArgs(
                    sasl=aws.msk.ServerlessClusterClientAuthenticationSaslArgs(
                        iam=aws.msk.ServerlessClusterClientAuthenticationSaslIamArgs(enabled=True)
                    )
                ),
                vpc_configs=[
                    aws.msk.ServerlessClusterVpcConfigArgs(
                        subnet_ids=list(args.subnet_ids), security_group_ids=[sg.id]
                    )
                ],
                tags=dict(args.tags),
                opts=stateful,
            )
            self.cluster_arn = serverless.arn
            self.cluster_uuid = serverless.cluster_uuid
            self.bootstrap_brokers = serverless.bootstrap_brokers_sasl_iam

        self._topics(name, args)

        cluster_arn, topic_arn, group_arn = self.cluster_arn, self.topic_arn, self.group_arn
        connect = {
            "sid": "Connect",
            "actions": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
            "resources": [cluster_arn],
        }
        self.producer_policy = policy_document(
            self,
            [
                {
                    **connect,
                    # The producers are idempotent (enable.idempotence=true).
                    "actions": [*connect["actions"], "kafka-cluster:WriteDataIdempotently"],
                },
                {
                    "sid": "WriteJobs",
                    "actions": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    "resources": [topic_arn(self.topic_name)],
                },
            ],
        )
        self.consumer_policy = policy_document(
            self,
            [
                {
                    **connect,
                    # Its dead-letter producer is idempotent too; with WriteData on one topic
                    # only, MSK IAM needs this on the cluster (Kafka 2.8+, KIP-679).
                    "actions": [*connect["actions"], "kafka-cluster:WriteDataIdempotently"],
                },
                {
                    "sid": "ReadJobs",
                    "actions": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                    "resources": [topic_arn(self.topic_name)],
                },
                {
                    "sid": "WriteDeadLetters",
                    "actions": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    "resources": [topic_arn(self.dead_letter_topic_name)],
                },
                {
                    "sid": "ConsumerGroup",
                    "actions": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                    "resources": [group_arn(self.consumer_group)],
                },
            ],
        )

        self.register_outputs(
            {
                "clusterArn": self.cluster_arn,
                "bootstrapBrokers": self.bootstrap_brokers,
                "securityGroupId": self.security_group_id,
                "topic": self.topic_name,
                "deadLetterTopic": self.dead_letter_topic_name,
            }
        )

    # ---- the provisioned cluster -------------------------------------------------------------

    def _provisioned(
        self,
        name: str,
        args: KafkaArgs,
        sg: aws.ec2.SecurityGroup,
        child: pulumi.ResourceOptions,
        stateful: pulumi.ResourceOptions,
    ) -> aws.msk.Cluster:
        # Protected like the cluster: deleting the key makes the cluster's data unreadable.
        key = customer_managed_key(
            self,
            f"{name}-at-rest",
            alias=args.cluster_name,
            description=f"{args.cluster_name}: MSK encryption at rest",
            protect=args.protect,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-brokers",
            name=args.log_group_name or f"/aws/msk/{args.cluster_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        # One configuration for the cluster's lifetime: same name, no kafka_versions (both would
        # force a replacement), so a property change is an in-place update = a new revision.
        configuration = aws.msk.Configuration(
            f"{name}-config",
            name=f"{args.cluster_name}-config",
            description=f"{args.cluster_name}: broker defaults",
            server_properties=args.server_properties
            or server_properties(
                partitions=args.topics[0].partitions,
                replication_factor=args.topics[0].replication_factor,
                min_insync_replicas=int(args.topics[0].config["min.insync.replicas"]),
                retention_hours=int(args.topics[0].config["retention.ms"]) // HOUR_MS,
            ),
            opts=stateful,
        )
        self.configuration_arn = configuration.arn
        self.configuration_revision = configuration.latest_revision

        cluster = aws.msk.Cluster(
            name,
            cluster_name=args.cluster_name,
            kafka_version=args.kafka_version,
            number_of_broker_nodes=args.broker_count,
            broker_node_group_info=aws.msk.ClusterBrokerNodeGroupInfoArgs(
                instance_type=args.instance_type,
                client_subnets=list(args.subnet_ids),
                security_groups=[sg.id],
                storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoArgs(
                    ebs_storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoEbsStorageInfoArgs(
                        volume_size=args.volume_size_gb
                    )
                ),
            ),
            client_authentication=aws.msk.ClusterClientAuthenticationArgs(
                sasl=aws.msk.ClusterClientAuthenticationSaslArgs(iam=True, scram=False),
                unauthenticated=False,
            ),
            encryption_info=aws.msk.ClusterEncryptionInfoArgs(
                encryption_at_rest_kms_key_arn=key.arn,
                encryption_in_transit=aws.msk.ClusterEncryptionInfoEncryptionInTransitArgs(
                    client_broker="TLS", in_cluster=True
                ),
            ),
            configuration_info=aws.msk.ClusterConfigurationInfoArgs(
                arn=configuration.arn, revision=configuration.latest_revision
            ),
            enhanced_monitoring=args.enhanced_monitoring.value,
            logging_info=aws.msk.ClusterLoggingInfoArgs(
                broker_logs=aws.msk.ClusterLoggingInfoBrokerLogsArgs(
                    cloudwatch_logs=aws.msk.ClusterLoggingInfoBrokerLogsCloudwatchLogsArgs(
                        enabled=True, log_group=log_group.name
                    )
                )
            ),
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions.merge(
                stateful, pulumi.ResourceOptions(ignore_changes=[VOLUME_SIZE_PATH])
            ),
        )

        target = aws.appautoscaling.Target(
            f"{name}-storage",
            service_namespace="kafka",
            scalable_dimension=STORAGE_DIMENSION,
            resource_id=cluster.arn,
            min_capacity=1,
            max_capacity=args.max_volume_size_gb,
            opts=child,
        )
        target_tracking_policy(
            self,
            f"{name}-storage",
            policy_name=f"{args.cluster_name}-broker-storage",
            target=target,
            configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=args.storage_target_percent,
                # MSK storage only grows: scale-in is not supported and must be disabled.
                disable_scale_in=True,
                predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type=STORAGE_METRIC
                ),
            ),
        )
        return cluster

    # ---- topics --------------------------------------------------------------------------------

    def _topics(self, name: str, args: KafkaArgs) -> None:
        if args.topic_manager is TopicManager.AWS:
            for spec in args.topics:
                aws.msk.Topic(
                    f"{name}-{spec.key}",
                    name=spec.name,
                    cluster_arn=self.cluster_arn,
                    partition_count=spec.partitions,
                    replication_factor=spec.replication_factor,
                    configs=json.dumps(dict(spec.config), sort_keys=True),
                    opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
                )
            return
        provider = kafka.Provider(
            f"{name}-admin",
            bootstrap_servers=self.bootstrap_brokers.apply(
                lambda brokers: [b for b in brokers.split(",") if b]
            ),
            tls_enabled=True,
            sasl_mechanism="aws-iam",
            sasl_aws_region=args.region,
            kafka_version=args.kafka_version.removesuffix(".x").removesuffix(".kraft"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for spec in args.topics:
            kafka.Topic(
                f"{name}-{spec.key}",
                name=spec.name,
                partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=dict(spec.config),
                opts=pulumi.ResourceOptions(parent=self, provider=provider, protect=args.protect),
            )

    # ---- ARNs and clients ----------------------------------------------------------------------

    def _resource_arn(self, kind: str, resource: str) -> pulumi.Output[str]:
        """``arn:<partition>:kafka:<region>:<account>:<kind>/<cluster name>/<cluster uuid>/<x>``."""
        return pulumi.Output.all(self.cluster_arn, self.cluster_uuid).apply(
            lambda v: f"{v[0].split(':cluster/')[0]}:{kind}/{self.cluster_name}/{v[1]}/{resource}"
        )

    def topic_arn(self, topic: str) -> pulumi.Output[str]:
        return self._resource_arn("topic", topic)

    def group_arn(self, group: str) -> pulumi.Output[str]:
        return self._resource_arn("group", group)

    def allow_client(
        self, name: str, security_group_id: pulumi.Input[str], *, egress: bool = True
    ) -> None:
        """Open the IAM/TLS port between one client security group and the brokers: an ingress
        rule on the brokers' group and, with ``egress``, an egress rule on the client's (separate
        rule resources, so adding or removing a client never changes the cluster's inputs).
        Groups this stack does not own (the producers') get no egress rule from it."""
        tcp_rule(
            self,
            f"{self._name}-from-{name}",
            "ingress",
            group_id=self.security_group_id,
            port=IAM_PORT,
            description=f"Kafka IAM/TLS from {name}",
            peer_group=security_group_id,
        )
        if not egress:
            return
        tcp_rule(
            self,
            f"{self._name}-egress-{name}",
            "egress",
            group_id=security_group_id,
            port=IAM_PORT,
            description=f"Kafka IAM/TLS to the {self.cluster_name} brokers",
            peer_group=self.security_group_id,
        )
