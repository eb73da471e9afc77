"""Customer-managed KMS keys: one rotated key and its alias, created under a component."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

DELETION_WINDOW_DAYS = 30


def customer_managed_key(
    parent: pulumi.Resource,
    name: str,
    *,
    alias: str,
    description: str,
    policy: pulumi.Input[str] | None = None,
    protect: bool = False,
) -> aws.kms.Key:
    """A key with yearly rotation and the longest deletion window, plus ``alias/<alias>``.

    Both resources are children of ``parent`` with the logical name ``name``. ``policy`` is the
    key policy (None: the default policy AWS writes, the account administers the key);
    ``protect`` protects the key (not the alias, which can be recreated at any time)."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=DELETION_WINDOW_DAYS,
        policy=policy,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    aws.kms.Alias(
        name,
        name=f"alias/{alias}",
        target_key_id=key.key_id,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return key
