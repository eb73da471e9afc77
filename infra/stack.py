"""The program: config -> phase table -> components -> exports.

``build`` is called by ``infra/__main__.py`` under the real engine and by the offline plan under
mocks; it is the only composition of the components. Each resource group of the phase table has
one function below, called in dependency order.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.batch import Batch, BatchArgs, BatchTrigger
from components.consumer_service import ConsumerService, ConsumerServiceArgs, ScalingMetric
from components.database import Database, DatabaseArgs
from components.failed_jobs import FailedJobsArgs, FailedJobsCapture
from components.job_queue import JobQueue, JobQueueArgs
from components.kafka import Kafka, KafkaArgs, topic_specs
from components.monitoring import (
    BatchMonitoring,
    ConsumerLagMonitoring,
    DatabaseMonitoring,
    KafkaMonitoring,
    MigrationTriggers,
    Monitoring,
    MonitoringArgs,
    PipeMonitoring,
    QueueMonitoring,
    ServiceMonitoring,
)
from components.network import Network, NetworkArgs
from components.producer_access import ProducerAccess, ProducerAccessArgs
from components.routing import RoutingArgs, RoutingParameter
from infra.config import StackConfig
from jobstream.contract import env
from jobstream.contract.choices import KafkaMode
from jobstream.contract.names import Names
from jobstream.contract.phases import GroupState, Phase, ResourceGroup, Route, phase


@dataclass(frozen=True)
class Context:
    cfg: StackConfig
    names: Names
    phase: Phase
    opts: pulumi.ResourceOptions
    """Options every top-level component gets (the explicit AWS provider with default tags)."""


def build(cfg: StackConfig) -> None:
    provider = aws.Provider(
        "aws",
        region=cfg.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=cfg.default_tags),
    )
    ctx = Context(cfg, cfg.names, phase(cfg.phase), pulumi.ResourceOptions(providers=[provider]))
    pulumi.export("phase", cfg.phase)

    network = _network(ctx)
    jobs = _job_queue(ctx) if ctx.phase.has(ResourceGroup.JOB_QUEUE) else None
    database = _database(ctx, network)
    batch = _batch(ctx, network, jobs, database) if ctx.phase.has(ResourceGroup.BATCH) else None
    kafka = _kafka(ctx, network) if ctx.phase.has(ResourceGroup.KAFKA) else None
    consumer = (
        _consumer_service(ctx, network, kafka, database)
        if ctx.phase.has(ResourceGroup.CONSUMER_SERVICE)
        else None
    )
    routing = _routing(ctx, jobs, kafka, batch, consumer)
    producers = _producers(ctx, jobs, kafka, routing)
    monitoring = _monitoring(ctx)
    del network, jobs, database, batch, kafka, consumer, routing, producers, monitoring


def _network(ctx: Context) -> Network:
    cfg, names = ctx.cfg, ctx.names
    network = Network(
        "network",
        NetworkArgs(
            prefix=names.prefix,
            vpc_cidr=cfg.network.vpc_cidr,
            az_count=cfg.network.az_count,
            nat_strategy=cfg.network.nat_strategy,
            flow_log_retention_days=cfg.network.flow_log_retention_days,
            flow_log_group_name=names.log_group("vpc-flow-logs"),
            interface_endpoints=cfg.network.interface_endpoints,
        ),
        ctx.opts,
    )
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("publicSubnetIds", network.public_subnet_ids)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    return network


def _job_queue(ctx: Context) -> JobQueue:
    cfg, names = ctx.cfg, ctx.names
    jobs = JobQueue(
        "jobs",
        JobQueueArgs(
            queue_name=names.job_queue,
            dead_letter_queue_name=names.dead_letter_queue,
            visibility_timeout_seconds=cfg.queue.visibility_timeout_seconds,
            retention_seconds=cfg.queue.retention_seconds,
            dlq_retention_seconds=cfg.queue.dlq_retention_seconds,
            max_receive_count=cfg.queue.max_receive_count,
            kms_key_arn=cfg.queue.kms_key_arn,
            protect=cfg.protect_stateful,
            queue_import_id=cfg.adoption.job_queue_url,
            dlq_import_id=cfg.adoption.dead_letter_queue_url,
        ),
        ctx.opts,
    )
    pulumi.export("queueUrl", jobs.queue_url)
    pulumi.export("queueArn", jobs.queue_arn)
    pulumi.export("dlqUrl", jobs.dlq_url)
    return jobs


def _database(ctx: Context, network: Network) -> Database:
    cfg, names, db = ctx.cfg, ctx.names, ctx.cfg.database
    # Present in every phase with the same inputs: a phase change never touches it.
    database = Database(
        "database",
        DatabaseArgs(
            instance_identifier=names.db_instance,
            proxy_name=names.db_proxy,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            instance_class=db.instance_class,
            engine_version=db.engine_version,
            auto_minor_version_upgrade=db.auto_minor_version_upgrade,
            performance_insights=db.performance_insights,
            performance_insights_retention_days=db.performance_insights_retention_days,
            allocated_storage_gb=db.allocated_storage_gb,
            max_allocated_storage_gb=db.max_allocated_storage_gb,
            db_name=db.name,
            master_username=db.master_username,
            app_username=db.app_username,
            multi_az=db.multi_az,
            deletion_protection=db.deletion_protection,
            backup_retention_days=db.backup_retention_days,
            log_retention_days=cfg.log_retention_days,
            proxy_max_connections_percent=db.proxy_max_connections_percent,
            proxy_max_idle_connections_percent=db.proxy_max_idle_connections_percent,
            proxy_connection_borrow_timeout_seconds=db.proxy_connection_borrow_timeout_seconds,
            proxy_idle_client_timeout_seconds=db.proxy_idle_client_timeout_seconds,
            existing_instance_id=db.existing_instance_id,
            protect=cfg.protect_stateful,
        ),
        ctx.opts,
    )
    pulumi.export("dbProxyEndpoint", database.proxy_endpoint)
    pulumi.export("dbProxyArn", database.proxy_arn)
    pulumi.export("dbInstanceIdentifier", database.instance_identifier)
    return database


def _batch(ctx: Context, network: Network, jobs: JobQueue | None, database: Database) -> Batch:
    cfg, names, batch = ctx.cfg, ctx.names, ctx.cfg.batch
    trigger_state = ctx.phase.state(ResourceGroup.SQS_TRIGGER)
    trigger = None
    if trigger_state is not None:
        if jobs is None:
            raise ValueError(f"phase {ctx.phase.label}: the SQS trigger needs the SQS job queue")
        trigger = BatchTrigger(
            pipe_name=names.pipe,
            queue_arn=jobs.queue_arn,
            consume=jobs.grant_consume(),
            running=trigger_state is GroupState.RUNNING,
            log_group_name=names.log_group("sqs-to-batch-pipe"),
        )
    component = Batch(
        "batch",
        BatchArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            compute_type=batch.compute_type,
            max_vcpus=batch.max_vcpus,
            spot_instance_types=batch.spot_instance_types,
            compute_environment_name_prefix=names.batch_compute_environment_prefix,
            job_queue_name=names.batch_job_queue,
            job_definition_name=names.batch_job_definition,
            log_group_name=names.log_group("batch"),
            log_retention_days=cfg.log_retention_days,
            image=batch.image,
            job_vcpu=batch.job_vcpu,
            job_memory_mib=batch.job_memory_mib,
            job_timeout_seconds=batch.job_timeout_seconds,
            job_attempts=batch.job_attempts,
            enabled=ctx.phase.state(ResourceGroup.BATCH) is GroupState.ENABLED,
            stack=cfg.stack,
            routing_parameter_name=names.routing_parameter,
            db_host=database.proxy_endpoint,
            db_name=cfg.database.name,
            db_user=cfg.database.app_username,
            db_security_group_id=database.proxy_security_group_id,
            trigger=trigger,
            adopted_compute_environment=names.batch_compute_environment,
            job_queue_import_id=cfg.adoption.batch_job_queue_arn,
            job_definition_import_id=cfg.adoption.batch_job_definition_arn,
        ),
        ctx.opts,
    )
    database.allow_client("batch", component.security_group_id)
    database.grant_connect("batch", component.job_role, cfg.database.app_username)
    # Every phase with Batch captures the jobs that fail for good (the pipe has deleted their
    # messages from SQS by then).
    failed = FailedJobsCapture(
        "failed-jobs",
        FailedJobsArgs(
            queue_name=names.failed_jobs_queue,
            rule_name=names.failed_jobs_rule,
            job_queue_arn=component.job_queue_arn,
            protect=cfg.protect_stateful,
        ),
        ctx.opts,
    )
    pulumi.export("failedJobsQueueUrl", failed.queue_url)
    pulumi.export("batchJobQueueArn", component.job_queue_arn)
    pulumi.export("batchJobDefinitionArn", component.job_definition_arn)
    if component.pipe_name is not None:
        pulumi.export("pipeName", component.pipe_name)
    return component


def _kafka(ctx: Context, network: Network) -> Kafka:
    cfg, names, k = ctx.cfg, ctx.names, ctx.cfg.kafka
    # Present from phase 2 with the same inputs in every phase: clients are added and removed
    # as separate security-group rules and role policies, never as cluster inputs.
    kafka = Kafka(
        "kafka",
        KafkaArgs(
            cluster_name=names.kafka_cluster,
            mode=k.mode,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            topic_manager=k.topic_manager,
            topics=topic_specs(
                topic_name=k.topic_name,
                dead_letter_topic_name=k.dead_letter_topic_name,
                partitions=k.topic_partitions,
                replication_factor=k.replication_factor,
                min_insync_replicas=k.min_insync_replicas,
                retention_hours=k.topic_retention_hours,
                dead_letter_retention_hours=k.dead_letter_retention_hours,
            ),
            consumer_group=k.consumer_group,
            region=cfg.region,
            kafka_version=k.version,
            instance_type=k.instance_type,
            broker_count=k.broker_count,
            volume_size_gb=k.volume_size_gb,
            max_volume_size_gb=k.max_volume_size_gb,
            storage_target_percent=k.storage_target_percent,
            enhanced_monitoring=k.enhanced_monitoring,
            log_group_name=names.log_group("msk-brokers"),
            log_retention_days=cfg.log_retention_days,
            protect=cfg.protect_stateful,
        ),
        ctx.opts,
    )
    # The producers (the backend API) live outside this stack: their security groups are
    # admitted here, their roles attach the producer policy (see _producers). The Batch jobs
    # consume SQS only and get no Kafka access.
    for i, group_id in enumerate(k.producer_security_group_ids):
        kafka.allow_client(f"producer-{i}", group_id, egress=False)
    pulumi.export("clusterArn", kafka.cluster_arn)
    pulumi.export("bootstrapBrokers", kafka.bootstrap_brokers)
    pulumi.export("topic", kafka.topic_name)
    pulumi.export("deadLetterTopic", kafka.dead_letter_topic_name)
    return kafka


def _consumer_service(
    ctx: Context, network: Network, kafka: Kafka | None, database: Database
) -> ConsumerService:
    cfg, names, c = ctx.cfg, ctx.names, ctx.cfg.consumer
    if kafka is None:
        raise ValueError(f"phase {ctx.phase.label}: the Kafka consumer service needs Kafka")
    # The same task definition in every phase: the mode (verify / primary) is read from the
    # routing parameter at run time.
    service = ConsumerService(
        "consumer",
        ConsumerServiceArgs(
            cluster_name=names.ecs_cluster,
            service_name=names.ecs_service,
            image=cfg.batch.image,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            environment=env.worker_environment(
                env.CONSUMER_KAFKA,
                stack=cfg.stack,
                region=cfg.region,
                routing_parameter=names.routing_parameter,
                db_host=database.proxy_endpoint,
                db_name=cfg.database.name,
                db_user=cfg.database.app_username,
                kafka_max_poll_interval_ms=env.kafka_max_poll_interval_ms(
                    cfg.batch.job_timeout_seconds
                ),
            ),
            kafka_consumer_policy=kafka.consumer_policy,
            database_security_group_id=database.proxy_security_group_id,
            log_group_name=names.log_group("consumer"),
            log_retention_days=cfg.log_retention_days,
            cpu=c.cpu,
            memory_mib=c.memory_mib,
            desired_count=c.desired_count,
            min_count=c.min_count,
            max_count=c.max_count,
            # Lag scaling reads SumOffsetLag as one data point per group and topic, which is how
            # provisioned clusters publish it; serverless publishes it per partition (to be
            # summed), which this policy does not do, so serverless scales on CPU.
            scaling_metric=(
                ScalingMetric.CONSUMER_LAG
                if cfg.kafka.mode is KafkaMode.PROVISIONED
                else ScalingMetric.CPU
            ),
            lag_target_per_task=c.lag_target_per_task,
            cpu_target_percent=c.cpu_target_percent,
            kafka_cluster_name=names.kafka_cluster,
            consumer_group=cfg.kafka.consumer_group,
            topic=cfg.kafka.topic_name,
        ),
        ctx.opts,
    )
    kafka.allow_client("consumer", service.security_group_id)
    database.allow_client("consumer", service.security_group_id)
    database.grant_connect("consumer", service.task_role, cfg.database.app_username)
    pulumi.export("consumerServiceName", service.service_name)
    return service


def _routing(
    ctx: Context,
    jobs: JobQueue | None,
    kafka: Kafka | None,
    batch: Batch | None,
    consumer: ConsumerService | None,
) -> RoutingParameter:
    names = ctx.names
    routing = RoutingParameter(
        "routing",
        RoutingArgs(
            parameter_name=names.routing_parameter,
            stack=ctx.cfg.stack,
            phase=ctx.phase,
            queue_url=jobs.queue_url if jobs else None,
            dlq_url=jobs.dlq_url if jobs else None,
            topic=kafka.topic_name if kafka else None,
            dead_letter_topic=kafka.dead_letter_topic_name if kafka else None,
            bootstrap_brokers=kafka.bootstrap_brokers if kafka else None,
            consumer_group=kafka.consumer_group if kafka else None,
        ),
        ctx.opts,
    )
    # Readable by the Batch job role and the ECS task role only.
    if batch is not None:
        routing.grant_read("batch", batch.job_role)
    if consumer is not None:
        routing.grant_read("consumer", consumer.task_role)
    pulumi.export("routingParameter", routing.parameter_name)
    return routing


def _producers(
    ctx: Context, jobs: JobQueue | None, kafka: Kafka | None, routing: RoutingParameter
) -> ProducerAccess:
    access = ProducerAccess(
        "producers",
        ProducerAccessArgs(
            policy_name=ctx.names.producer_policy,
            routing_parameter_arn=routing.parameter_arn,
            send_jobs=jobs.grant_send() if jobs else None,
            kafka_producer_policy=kafka.producer_policy if kafka else None,
        ),
        ctx.opts,
    )
    pulumi.export("producerPolicyArn", access.policy_arn)
    return access


def _monitoring(ctx: Context) -> Monitoring:
    """Alarms for the groups present in the phase, addressed by name: no outputs needed."""
    cfg, names, has = ctx.cfg, ctx.names, ctx.phase.has
    mon, k = cfg.monitoring, cfg.kafka
    provisioned = k.mode is KafkaMode.PROVISIONED
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            stack=cfg.stack,
            region=cfg.region,
            phase_label=ctx.phase.label,
            alert_topic_name=names.alert_topic,
            alarm_prefix=names.alarm_prefix,
            dashboard_name=names.dashboard,
            alert_email=mon.alert_email,
            routes=tuple(r.value for r in Route),
            database=DatabaseMonitoring(
                instance_id=cfg.database.existing_instance_id or names.db_instance,
                proxy_name=names.db_proxy,
                cpu_threshold_percent=mon.rds_cpu_threshold_percent,
                free_storage_threshold_gb=mon.rds_free_storage_threshold_gb,
            ),
            queue=QueueMonitoring(
                queue_name=names.job_queue,
                dead_letter_queue_name=names.dead_letter_queue,
                depth_threshold=mon.queue_depth_threshold,
                age_threshold_seconds=mon.queue_age_threshold_seconds,
            )
            if has(ResourceGroup.JOB_QUEUE)
            else None,
            triggers=MigrationTriggers(
                queue_name=names.job_queue,
                jobs_per_day=mon.trigger_jobs_per_day,
                sustained_days=mon.trigger_sustained_days,
                latency_seconds=mon.trigger_latency_seconds,
                latency_breach_percent=mon.trigger_latency_breach_percent,
            )
            if has(ResourceGroup.JOB_QUEUE)
            else None,
            batch=BatchMonitoring(
                job_queue_name=names.batch_job_queue,
                failed_jobs_queue_name=names.failed_jobs_queue,
                failed_jobs_rule_name=names.failed_jobs_rule,
            )
            if has(ResourceGroup.BATCH)
            else None,
            pipe=PipeMonitoring(pipe_name=names.pipe) if has(ResourceGroup.SQS_TRIGGER) else None,
            kafka=KafkaMonitoring(
                cluster_name=names.kafka_cluster,
                broker_count=k.broker_count if provisioned else None,
                cpu_threshold_percent=mon.msk_cpu_threshold_percent,
                disk_threshold_percent=mon.msk_disk_threshold_percent,
            )
            if has(ResourceGroup.KAFKA)
            else None,
            consumer_lag=ConsumerLagMonitoring(
                cluster_name=names.kafka_cluster,
                consumer_group=k.consumer_group,
                topic=k.topic_name,
                lag_threshold=mon.consumer_lag_threshold,
                ecs_cluster_name=names.ecs_cluster,
                ecs_service_name=names.ecs_service,
            )
            if has(ResourceGroup.CONSUMER_SERVICE)
            else None,
            service=ServiceMonitoring(
                cluster_name=names.ecs_cluster, service_name=names.ecs_service
            )
            if has(ResourceGroup.CONSUMER_SERVICE)
            else None,
        ),
        ctx.opts,
    )
    pulumi.export("alertTopicArn", monitoring.topic_arn)
    pulumi.export("dashboardName", monitoring.dashboard_name)
    return monitoring
