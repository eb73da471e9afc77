"""Each rule of infra/config.py: a bad value fails with an error naming the key."""

from __future__ import annotations

import pytest

from infra.config import KEYS, ConfigError, Environment, parse, read_stack_config


def stack_config(stack: str, changes: dict[str, str | None]) -> dict[str, str]:
    """The stack file's config with ``jobstream:`` keys changed (None removes a key)."""
    raw = read_stack_config(stack)
    for key, value in changes.items():
        if value is None:
            raw.pop(f"jobstream:{key}", None)
        else:
            raw[f"jobstream:{key}"] = value
    return raw


def dev_config(**changes: str | None) -> dict[str, str]:
    return stack_config("dev", changes)


def prod_config(**changes: str | None) -> dict[str, str]:
    return stack_config("prod", changes)


def rejected_keys(raw: dict[str, str], stack: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw, stack=stack)
    return caught.value.keys


def test_both_stack_files_are_valid() -> None:
    dev = parse(read_stack_config("dev"), stack="dev")
    prod = parse(read_stack_config("prod"), stack="prod")
    assert (dev.phase, prod.phase) == (3, 1)
    assert dev.environment is Environment.DEV and prod.environment is Environment.PROD


@pytest.mark.parametrize("value", ["0", "6", "three", "2.5"])
def test_phase_must_be_1_to_5(value: str) -> None:
    assert rejected_keys(dev_config(phase=value)) == ["phase"]


def test_phase_is_required() -> None:
    assert rejected_keys(dev_config(phase=None)) == ["phase"]


def test_phase_5_needs_the_confirmation_key() -> None:
    with pytest.raises(ConfigError, match="confirmCleanup") as caught:
        parse(dev_config(phase="5"), stack="dev")
    assert caught.value.keys == ["phase"]


def test_phase_5_with_the_confirmation_key_is_accepted() -> None:
    assert parse(dev_config(phase="5", confirmCleanup="true"), stack="dev").cleanup_confirmed


@pytest.mark.parametrize(
    "value", ["10.0.0.0/8", "10.0.0.0/25", "8.8.0.0/16", "10.0.0.1/16", "banana"]
)
def test_vpc_cidr_must_be_private_and_large_enough(value: str) -> None:
    assert rejected_keys(dev_config(vpcCidr=value)) == ["vpcCidr"]


@pytest.mark.parametrize("value", ["1", "4"])
def test_az_count_is_2_or_3(value: str) -> None:
    assert "azCount" in rejected_keys(dev_config(azCount=value, kafkaBrokerCount="12"))


def test_nat_strategy_must_be_known() -> None:
    with pytest.raises(ConfigError, match="none, single, per-az"):
        parse(dev_config(natStrategy="perAz"), stack="dev")


def test_prod_needs_one_nat_per_az() -> None:
    assert rejected_keys(prod_config(natStrategy="single"), stack="prod") == ["natStrategy"]


def test_prod_may_reduce_nat_when_explicitly_allowed() -> None:
    cfg = parse(prod_config(natStrategy="single", allowReducedNat="true"), stack="prod")
    assert cfg.network.nat_strategy.value == "single"


def test_broker_count_must_be_a_multiple_of_az_count() -> None:
    assert rejected_keys(prod_config(kafkaBrokerCount="4"), stack="prod") == ["kafkaBrokerCount"]


def test_replication_factor_may_not_exceed_brokers() -> None:
    keys = rejected_keys(dev_config(topicReplicationFactor="3", topicMinInsyncReplicas="2"))
    assert keys == ["topicReplicationFactor"]


def test_min_insync_replicas_must_be_below_replication_factor() -> None:
    assert rejected_keys(dev_config(topicMinInsyncReplicas="2")) == ["topicMinInsyncReplicas"]


def test_visibility_timeout_must_cover_the_job_timeout() -> None:
    keys = rejected_keys(dev_config(queueVisibilityTimeoutSeconds="600", jobTimeoutSeconds="900"))
    assert keys == ["queueVisibilityTimeoutSeconds"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("queueRetentionSeconds", "59"),
        ("queueRetentionSeconds", "1209601"),
        ("dlqRetentionSeconds", "30"),
    ],
)
def test_sqs_retention_must_lie_in_the_sqs_range(key: str, value: str) -> None:
    assert key in rejected_keys(dev_config(**{key: value}))


def test_dlq_retention_must_not_be_shorter_than_the_queue_retention() -> None:
    keys = rejected_keys(dev_config(queueRetentionSeconds="864000", dlqRetentionSeconds="345600"))
    assert keys == ["dlqRetentionSeconds"]


@pytest.mark.parametrize("value", ["0", "10", "99999"])
def test_log_retention_must_be_a_cloudwatch_period(value: str) -> None:
    assert rejected_keys(dev_config(logRetentionDays=value)) == ["logRetentionDays"]


@pytest.mark.parametrize(
    "value", ["ops", "ops@", "@example.com", "ops@example", "ops example@x.com"]
)
def test_alert_email_must_be_well_formed(value: str) -> None:
    assert rejected_keys(dev_config(alertEmail=value)) == ["alertEmail"]


def test_unknown_keys_are_reported_with_a_suggestion() -> None:
    raw = dev_config()
    raw["jobstream:natStrategie"] = "single"
    with pytest.raises(ConfigError, match="did you mean jobstream:natStrategy") as caught:
        parse(raw, stack="dev")
    assert caught.value.keys == ["natStrategie"]


def test_keys_of_other_namespaces_are_not_ours_to_judge() -> None:
    raw = dev_config()
    raw["aws:profile"] = "ops"
    assert parse(raw, stack="dev").phase == 3


def test_every_problem_is_reported_at_once() -> None:
    keys = rejected_keys(dev_config(phase="9", azCount="7", alertEmail="nope"))
    assert sorted(keys) == ["alertEmail", "azCount", "phase"]


def test_error_names_key_value_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(dev_config(azCount="7"), stack="dev")
    assert "jobstream:azCount = '7': must be a whole number from 2 to 3" in str(caught.value)


def test_region_is_required() -> None:
    raw = dev_config()
    del raw["aws:region"]
    assert rejected_keys(raw) == ["(aws:region)"]


def test_environment_defaults_to_the_stack_name() -> None:
    cfg = parse(dev_config(environment=None), stack="dev")
    assert cfg.environment is Environment.DEV


def test_environment_is_required_for_other_stack_names() -> None:
    assert rejected_keys(dev_config(environment=None), stack="sandbox") == ["environment"]


def test_fargate_memory_must_fit_the_vcpu() -> None:
    assert rejected_keys(dev_config(jobVcpu="1", jobMemoryMib="512")) == ["jobMemoryMib"]


def test_fargate_vcpu_must_be_a_fargate_size() -> None:
    assert rejected_keys(dev_config(jobVcpu="3")) == ["jobVcpu"]


def test_proxy_idle_connections_may_not_exceed_max_connections() -> None:
    keys = rejected_keys(
        dev_config(proxyMaxConnectionsPercent="40", proxyMaxIdleConnectionsPercent="50")
    )
    assert keys == ["proxyMaxIdleConnectionsPercent"]


def test_db_storage_ceiling_may_not_be_below_the_initial_size() -> None:
    keys = rejected_keys(dev_config(dbAllocatedStorageGb="200", dbMaxAllocatedStorageGb="100"))
    assert keys == ["dbMaxAllocatedStorageGb"]


def test_consumer_desired_count_must_lie_between_min_and_max() -> None:
    assert rejected_keys(dev_config(consumerDesiredCount="5")) == ["consumerDesiredCount"]


def test_consumer_max_count_may_not_exceed_partitions() -> None:
    keys = rejected_keys(dev_config(topicPartitions="1", consumerMaxCount="2"))
    assert keys == ["consumerMaxCount"]


def test_interface_endpoints_must_be_known_services() -> None:
    assert rejected_keys(dev_config(interfaceEndpoints='["sqs", "s3x"]')) == ["interfaceEndpoints"]


def test_booleans_must_be_true_or_false() -> None:
    assert rejected_keys(dev_config(dbMultiAz="yes")) == ["dbMultiAz"]


def test_protection_defaults_on_in_prod_and_off_in_dev() -> None:
    assert parse(prod_config(protectStatefulResources=None), stack="prod").protect_stateful
    assert not parse(dev_config(), stack="dev").protect_stateful


def test_phase_is_not_a_default_tag() -> None:
    tags = parse(dev_config(), stack="dev").default_tags
    assert tags == {"Project": "jobstream", "Environment": "dev", "ManagedBy": "pulumi"}


def test_every_key_has_help_and_an_allowed_text() -> None:
    missing = [k.name for k in KEYS if not k.help or not k.allowed]
    assert missing == []
