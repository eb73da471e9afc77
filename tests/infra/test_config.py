"""Each rule of infra/config/: a bad value fails with an error naming the key."""

from __future__ import annotations

import re

import pytest

from infra.config import KEYS, ConfigError, Environment, known_values, parse, read_stack_config
from jobstream.contract.names import longest_stack_name


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


# ---- issue 12: mistakes that used to pass --------------------------------------------------------


def problem_text(raw: dict[str, str], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        parse(raw, stack=stack)
    return str(caught.value)


# Defect 1: the MSK topic APIs (aws.msk.Topic) need a provisioned cluster on Kafka >= 3.6.0.


def test_aws_topic_manager_is_refused_on_serverless_naming_both_keys() -> None:
    """Amazon MSK Developer Guide, Requirements for using topic APIs: "Your cluster must be an
    MSK Provisioned cluster. These APIs are not available for MSK Serverless clusters." """
    raw = dev_config(kafka="aws", kafkaMode="serverless")
    assert rejected_keys(raw) == ["kafka"]
    text = problem_text(raw)
    assert "jobstream:kafka = 'aws'" in text and "jobstream:kafkaMode" in text


def test_aws_topic_manager_is_refused_below_kafka_3_6_0_naming_both_keys() -> None:
    """Same page: "Your cluster must be running Apache Kafka version 3.6.0 or later." """
    raw = dev_config(kafkaVersion="3.5.1", allowUnlistedValues="true")
    assert rejected_keys(raw) == ["kafka"]
    assert "jobstream:kafkaVersion = '3.5.1'" in problem_text(raw)


def test_kafka_topic_manager_works_on_serverless() -> None:
    cfg = parse(dev_config(kafka="kafka", kafkaMode="serverless"), stack="dev")
    assert cfg.kafka.mode.value == "serverless"


def test_aws_topic_manager_accepts_kafka_3_6_0_and_later() -> None:
    assert parse(dev_config(kafkaVersion="3.6.0"), stack="dev").kafka.version == "3.6.0"


# Defect 2: a minor engine version pinned while RDS upgrades minors.


def test_engine_version_defaults_to_the_major_version() -> None:
    cfg = parse(dev_config(), stack="dev")
    assert (cfg.database.engine_version, cfg.database.auto_minor_version_upgrade) == ("16", True)


def test_minor_engine_version_is_refused_while_auto_minor_upgrades_are_on() -> None:
    raw = dev_config(dbEngineVersion="16.4")
    assert rejected_keys(raw) == ["dbEngineVersion"]
    assert "plan a downgrade" in problem_text(raw)


def test_minor_engine_version_is_accepted_without_auto_minor_upgrades() -> None:
    cfg = parse(dev_config(dbEngineVersion="16.4", dbAutoMinorVersionUpgrade="false"), stack="dev")
    assert cfg.database.engine_version == "16.4"


# Defect 8: the consumer's Fargate task size.


@pytest.mark.parametrize(
    ("cpu", "memory"), [("256", "4096"), ("1024", "1024"), ("4096", "4000"), ("512", "8192")]
)
def test_consumer_memory_must_be_a_fargate_size_for_its_cpu(cpu: str, memory: str) -> None:
    """ECS RegisterTaskDefinition memory: the valid CPU/memory pairs of Fargate."""
    raw = dev_config(consumerCpu=cpu, consumerMemoryMib=memory)
    assert rejected_keys(raw) == ["consumerMemoryMib"]
    assert f"jobstream:consumerCpu = {int(cpu)}" in problem_text(raw)


def test_consumer_fargate_size_is_accepted() -> None:
    cfg = parse(dev_config(consumerCpu="2048", consumerMemoryMib="16384"), stack="dev")
    assert (cfg.consumer.cpu, cfg.consumer.memory_mib) == (2048, 16384)


# Values that match a pattern but name nothing that exists (infra/known_values.json).


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kafkaInstanceType", "kafka.m7g.medium"),
        ("kafkaInstanceType", "kafka.t3.micro"),
        ("kafkaVersion", "3.10.0"),
        ("kafkaVersion", "2.8.1"),
        ("dbEngineVersion", "19"),
        ("dbEngineVersion", "11"),
    ],
)
def test_unlisted_values_are_refused_with_the_escape_key_named(key: str, value: str) -> None:
    raw = dev_config(**{key: value})
    assert rejected_keys(raw) == [key]
    assert "jobstream:allowUnlistedValues" in problem_text(raw)


def test_a_region_that_does_not_exist_is_refused() -> None:
    raw = dev_config()
    raw["aws:region"] = "us-north-1"
    assert rejected_keys(raw) == ["(aws:region)"]
    assert "jobstream:allowUnlistedValues" in problem_text(raw)


def test_the_escape_key_accepts_an_unlisted_value() -> None:
    raw = dev_config(kafkaInstanceType="kafka.m8g.large", allowUnlistedValues="true")
    assert parse(raw, stack="dev").kafka.instance_type == "kafka.m8g.large"


def test_known_values_name_their_source_and_date() -> None:
    for name, known in known_values().items():
        assert known.source and re.fullmatch(r"\d{4}-\d{2}-\d{2}", known.compiled), name
        assert known.values, name


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dbMasterUsername", "rdsadmin"),
        ("dbMasterUsername", "user"),
        ("dbAppUsername", "pg_app"),
        ("dbAppUsername", "public"),
    ],
)
def test_reserved_database_user_names_are_refused(key: str, value: str) -> None:
    raw = dev_config(**{key: value}, allowUnlistedValues="true")
    assert rejected_keys(raw) == [key]  # reserved words have no escape: the engine refuses them


def test_app_user_must_differ_from_the_master_user() -> None:
    with pytest.raises(
        ConfigError, match=r"dbAppUsername = 'jobstream_admin' .*is the master"
    ) as caught:
        parse(dev_config(dbAppUsername="jobstream_admin"), stack="dev")
    assert caught.value.keys == ["dbAppUsername"]
    assert caught.value.problems[0].related == {"dbMasterUsername": "jobstream_admin"}


def test_master_user_name_longer_than_rds_allows_is_refused() -> None:
    """CreateDBInstance MasterUsername: "Must be 1 to 16 letters, numbers, or underscores." """
    assert rejected_keys(dev_config(dbMasterUsername="jobstream_administrator")) == [
        "dbMasterUsername"
    ]


# ARNs of the wrong service or region.


def test_a_kms_key_in_another_region_is_refused() -> None:
    raw = dev_config(
        queueKmsKeyArn="arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    assert rejected_keys(raw) == ["queueKmsKeyArn"]
    text = problem_text(raw)
    assert "eu-west-1" in text and "aws:region" in text and "us-east-1" in text


def test_an_iam_arn_where_a_kms_key_belongs_is_refused() -> None:
    raw = dev_config(queueKmsKeyArn="arn:aws:iam::123456789012:role/jobstream")
    assert rejected_keys(raw) == ["queueKmsKeyArn"]
    assert "not of a KMS key" in problem_text(raw)


def test_a_kms_alias_arn_is_refused_where_a_key_arn_belongs() -> None:
    raw = dev_config(queueKmsKeyArn="arn:aws:kms:us-east-1:123456789012:alias/jobstream")
    assert rejected_keys(raw) == ["queueKmsKeyArn"]


def test_a_kms_key_arn_of_the_stacks_region_is_accepted() -> None:
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert parse(dev_config(queueKmsKeyArn=arn), stack="dev").queue.kms_key_arn == arn


# Container images.


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobstream-ml",  # no tag: :latest
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/Jobstream-ML:1.0",  # uppercase path
        "registry.example.com//ml:1.0",
        "ml:1.0:2.0",
        "ml:-bad",
        "ml@sha256:abc",
    ],
)
def test_empty_or_malformed_image_references_are_refused(value: str) -> None:
    assert rejected_keys(dev_config(image=value)) == ["image"]


@pytest.mark.parametrize(
    "value",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/jobstream-ml:1.0.0",
        "localhost:5000/ml:dev",
        "ghcr.io/acme/ml@sha256:" + "a" * 64,
    ],
)
def test_well_formed_image_references_are_accepted(value: str) -> None:
    assert parse(dev_config(image=value), stack="dev").batch.image == value


# Misspelled namespaces.


@pytest.mark.parametrize("namespace", ["jobsteam", "jobstreams", "Jobstream", "job-stream"])
def test_keys_under_a_namespace_close_to_jobstream_are_refused(namespace: str) -> None:
    raw = dev_config()
    raw[f"{namespace}:natStrategy"] = "per-az"
    assert rejected_keys(raw) == [f"{namespace}:natStrategy"]
    text = problem_text(raw)
    assert "jobstream, aws, pulumi" in text and "did you mean jobstream:natStrategy" in text


# Stack names that derive names AWS refuses.


@pytest.mark.parametrize(
    "stack",
    [
        "a" * 40,  # the EventBridge rule <prefix>batch-job-failed exceeds 64 characters
        "my_stack",  # underscores are not allowed in an RDS identifier
        "dev.1",  # dots are not allowed in SQS queue names
        "team--a",  # two consecutive hyphens in an RDS identifier
        "Prod",  # RDS identifiers are lowercase (the provider refuses uppercase)
    ],
)
def test_stack_names_that_derive_invalid_aws_names_are_refused(stack: str) -> None:
    raw = dev_config(environment="dev")
    assert rejected_keys(raw, stack=stack) == ["(stack name)"]
    text = problem_text(raw, stack=stack)
    assert repr(stack) in text and f"at most {longest_stack_name()} characters" in text
    assert "lowercase letters" in text, text


def test_the_longest_allowed_stack_name_is_accepted() -> None:
    stack = "s" * longest_stack_name()
    assert parse(dev_config(environment="dev"), stack=stack).stack == stack


# Prod settings that contradict the guardrails.


@pytest.mark.parametrize("key", ["dbDeletionProtection", "protectStatefulResources"])
def test_prod_refuses_to_turn_a_guardrail_off(key: str) -> None:
    raw = prod_config(**{key: "false"})
    assert rejected_keys(raw, stack="prod") == [key]
    assert "must not be false in prod" in problem_text(raw, stack="prod")


def test_dev_may_turn_deletion_protection_off() -> None:
    assert not parse(
        dev_config(dbDeletionProtection="false"), stack="dev"
    ).database.deletion_protection


# Cross-key errors blame the key to change.


def test_min_above_max_is_reported_on_the_min_and_names_the_max() -> None:
    raw = dev_config(consumerMinCount="3", consumerMaxCount="2", consumerDesiredCount="2")
    assert rejected_keys(raw) == ["consumerMinCount"]
    assert "jobstream:consumerMaxCount = 2" in problem_text(raw)


def test_cross_key_problems_name_the_other_keys_and_values() -> None:
    text = problem_text(dev_config(kafkaBrokerCount="3"))
    assert "jobstream:kafkaBrokerCount = 3 (with jobstream:azCount = 2)" in text


def test_the_error_names_the_stack_file_it_came_from() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(dev_config(azCount="7"), stack="dev", source="Pulumi.dev.yaml")
    assert str(caught.value).startswith("invalid stack configuration in Pulumi.dev.yaml")
    assert caught.value.source == "Pulumi.dev.yaml"
