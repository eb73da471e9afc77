"""The deployment choices a stack's config offers and the components act on (standard library
only): compute for the Batch jobs, the MSK mode, who creates the topics, enhanced monitoring and
the NAT strategy.

``infra.config`` parses ``Pulumi.<stack>.yaml`` into these values and the components take them
as arguments. They live here, not beside the components, so that the operator commands read a
stack's config without importing Pulumi.
"""

from __future__ import annotations

from enum import StrEnum


class ComputeType(StrEnum):
    FARGATE = "FARGATE"
    FARGATE_SPOT = "FARGATE_SPOT"
    SPOT = "SPOT"
    """EC2 Spot instances."""

    @property
    def is_fargate(self) -> bool:
        return self in (ComputeType.FARGATE, ComputeType.FARGATE_SPOT)


class TopicManager(StrEnum):
    """Who creates the topics: the AWS control plane or a Kafka admin client."""

    AWS = "aws"
    KAFKA = "kafka"


class KafkaMode(StrEnum):
    PROVISIONED = "provisioned"
    SERVERLESS = "serverless"


class EnhancedMonitoring(StrEnum):
    DEFAULT = "DEFAULT"
    PER_BROKER = "PER_BROKER"
    PER_TOPIC_PER_BROKER = "PER_TOPIC_PER_BROKER"
    PER_TOPIC_PER_PARTITION = "PER_TOPIC_PER_PARTITION"


class NatStrategy(StrEnum):
    NONE = "none"
    SINGLE = "single"
    PER_AZ = "per-az"
