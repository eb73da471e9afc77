"""The program: config -> phase table -> components -> exports.

``build`` is called by ``infra/__main__.py`` under the real engine and by the offline plan under
mocks; it is the only composition of the components. Each resource group of the phase table has
one function below, called in dependency order.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.job_queue import JobQueue, JobQueueArgs
from components.network import Network, NetworkArgs
from infra.config import StackConfig
from infra.naming import Names
from infra.phases import Phase, ResourceGroup, phase


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
    ctx = Context(
        cfg, Names(cfg.stack), phase(cfg.phase), pulumi.ResourceOptions(providers=[provider])
    )
    pulumi.export("phase", cfg.phase)

    network = _network(ctx)
    jobs = _job_queue(ctx) if ctx.phase.has(ResourceGroup.JOB_QUEUE) else None
    del network, jobs  # used by the groups composed after them


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
        ),
        ctx.opts,
    )
    pulumi.export("queueUrl", jobs.queue_url)
    pulumi.export("queueArn", jobs.queue_arn)
    pulumi.export("dlqUrl", jobs.dlq_url)
    return jobs
