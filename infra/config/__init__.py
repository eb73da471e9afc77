"""Typed, validated stack configuration: the only package that reads Pulumi stack config.

Every key under ``jobstream:`` is declared once, on the section field that holds its value
(``keys.key``: name, parser, default, help); ``KEYS``, the parsing, the typed ``StackConfig``
and the README's configuration table are derived from those declarations. Unknown keys are
rejected with a suggestion, and every bad value raises ``ConfigError`` naming the key, the value
it got and what is allowed. A rule that relates keys sits on the section whose key it guards.
Components never read config: the stack passes them these plain values.

The program reads its config from the engine (``load``); the offline plan and the operator
commands read ``Pulumi.<stack>.yaml`` (``read_stack_config``). This package imports neither
Pulumi nor the components (the choices they take live in ``jobstream.contract.choices``), so a
command that only needs a stack's region or names never pays for importing the program.
"""

from infra.config.adoption import AdoptionConfig, stack_names
from infra.config.batch import BatchConfig
from infra.config.files import (
    PlanError,
    available_stacks,
    config_string,
    project_dir,
    read_stack_config,
)
from infra.config.kafka import ConsumerServiceConfig, KafkaConfig, MonitoringConfig
from infra.config.keys import (
    ESCAPE_KEY,
    NAMESPACE,
    NAMESPACES,
    ConfigError,
    Environment,
    Key,
    Problem,
    qualified,
)
from infra.config.loading import KnownList, known_values, load, markdown_table, parse
from infra.config.schema import ADOPTION_KEYS, KEYS, KEYS_BY_NAME, StackConfig
from infra.config.sections import DatabaseConfig, NetworkConfig, QueueConfig
from jobstream.contract.choices import (
    ComputeType,
    EnhancedMonitoring,
    KafkaMode,
    NatStrategy,
    TopicManager,
)

__all__ = [
    "ADOPTION_KEYS",
    "ESCAPE_KEY",
    "KEYS",
    "KEYS_BY_NAME",
    "NAMESPACE",
    "NAMESPACES",
    "AdoptionConfig",
    "BatchConfig",
    "ComputeType",
    "ConfigError",
    "ConsumerServiceConfig",
    "DatabaseConfig",
    "EnhancedMonitoring",
    "Environment",
    "KafkaConfig",
    "KafkaMode",
    "Key",
    "KnownList",
    "MonitoringConfig",
    "NatStrategy",
    "NetworkConfig",
    "PlanError",
    "Problem",
    "QueueConfig",
    "StackConfig",
    "TopicManager",
    "available_stacks",
    "config_string",
    "known_values",
    "load",
    "markdown_table",
    "parse",
    "project_dir",
    "qualified",
    "read_stack_config",
    "stack_names",
]
