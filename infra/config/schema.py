"""The whole stack config: ``StackConfig`` with the keys that concern the stack as a whole, the
sections it holds, and the key tables derived from them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from infra.config.adoption import AdoptionConfig
from infra.config.batch import BatchConfig
from infra.config.kafka import ConsumerServiceConfig, KafkaConfig, MonitoringConfig
from infra.config.keys import (
    ESCAPE_KEY,
    NAMESPACE,
    REQUIRED,
    TRUE_IN_PROD,
    Environment,
    Key,
    Problem,
    Values,
    all_keys,
    boolean,
    choice,
    integer,
    key,
    keys_of,
    log_retention,
    problem,
    rule_key,
    section,
)
from infra.config.sections import (
    DatabaseConfig,
    NetworkConfig,
    QueueConfig,
    prod_guardrail,
)
from jobstream.contract.names import Names
from jobstream.contract.phases import CLEANUP_PHASE, PHASES


@section("General")
@dataclass(frozen=True, kw_only=True)
class StackConfig:
    project: str
    stack: str
    region: str
    environment: Environment
    """The ``environment`` key's value, or the stack name's (declared below, in table order)."""
    phase: int = key(
        "phase",
        integer(PHASES[0], PHASES[-1]),
        REQUIRED,
        "Migration phase in force (see the phase table).",
    )
    cleanup_confirmed: bool = key(
        "confirmCleanup",
        boolean,
        False,
        "Must be true to allow phase 5, which deletes the SQS and Batch resources.",
    )
    ENVIRONMENT: ClassVar[Key] = rule_key(
        "environment",
        choice(Environment),
        None,
        "Environment class; defaults to the stack name when that is dev, staging or prod.",
    )
    protect_stateful: bool = key(
        "protectStatefulResources",
        boolean,
        TRUE_IN_PROD,
        "Protect the database, proxy, queues and MSK cluster from deletion; defaults to true in prod.",
    )
    ALLOW_UNLISTED_VALUES: ClassVar[Key] = rule_key(
        ESCAPE_KEY,
        boolean,
        False,
        "Accept a value missing from the known lists in infra/known_values.json (MSK broker types, Kafka versions, PostgreSQL majors, regions, reserved user names).",
    )
    log_retention_days: int = key(
        "logRetentionDays", log_retention, 30, "Retention of application, broker and job logs."
    )
    network: NetworkConfig
    queue: QueueConfig
    database: DatabaseConfig
    batch: BatchConfig
    kafka: KafkaConfig
    consumer: ConsumerServiceConfig
    monitoring: MonitoringConfig
    adoption: AdoptionConfig = field(default_factory=AdoptionConfig)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> Names:
        """The physical names of the stack's resources (adopted ones keep their own)."""
        return self.adoption.names(self.stack)

    @property
    def is_prod(self) -> bool:
        return self.environment is Environment.PROD

    @property
    def default_tags(self) -> dict[str, str]:
        # The phase is deliberately not a tag: every phase change would touch every resource.
        return {
            "Project": self.project,
            "Environment": self.environment.value,
            "ManagedBy": "pulumi",
        }

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        if v["phase"] == CLEANUP_PHASE and not v["confirmCleanup"]:
            yield problem(
                v,
                "phase",
                f"phase {CLEANUP_PHASE} deletes the SQS queues, the pipe and the Batch "
                f"resources; set {NAMESPACE}:confirmCleanup to true in this stack to allow it",
            )
        yield from prod_guardrail(v, "protectStatefulResources")


KEYS: tuple[Key, ...] = all_keys(StackConfig)
"""Every key under ``jobstream:``, in the README table's order."""
KEYS_BY_NAME: Mapping[str, Key] = {k.name: k for k in KEYS}
ADOPTION_KEYS: Mapping[str, str] = {k.name: str(k.attribute) for k in keys_of(AdoptionConfig)}
"""Config key -> ``AdoptionConfig`` field."""
