"""Application Auto Scaling: target-tracking policies on a scalable target."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def target_tracking_policy(
    parent: pulumi.Resource,
    name: str,
    *,
    policy_name: str,
    target: aws.appautoscaling.Target,
    configuration: aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs,
) -> aws.appautoscaling.Policy:
    """One target-tracking policy on ``target`` (several on one target scale out when any asks
    and in only when all agree)."""
    return aws.appautoscaling.Policy(
        name,
        name=policy_name,
        policy_type="TargetTrackingScaling",
        service_namespace=target.service_namespace,
        scalable_dimension=target.scalable_dimension,
        resource_id=target.resource_id,
        target_tracking_scaling_policy_configuration=configuration,
        opts=pulumi.ResourceOptions(parent=parent),
    )
