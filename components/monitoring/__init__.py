"""Alerting and the migration dashboard: the alert topic, alarms per phase, trigger alarms.

Everything is addressed by physical names (``jobstream.contract.names``) and CloudWatch dimensions, so
this component needs no outputs of the components it watches: the stack passes one optional
args object per resource group, present only when the group exists in the phase, and an alarm
exists exactly when its resource does.

- An SNS alert topic encrypted with a customer-managed KMS key (CloudWatch alarms cannot
  publish to a topic encrypted with the AWS-managed ``alias/aws/sns`` key: its key policy does
  not admit ``cloudwatch.amazonaws.com``), whose key policy and topic policy admit CloudWatch
  and EventBridge; an e-mail subscription (confirmed by the recipient).
- Alarms per resource group (SQS, Batch + pipe, MSK, consumer lag, ECS, RDS + proxy), every
  name starting with the stack's alarm prefix, each notifying the topic on ALARM and OK.
- Migration-trigger alarms while the SQS queue exists: jobs per day sustained above a threshold
  and the latency need; they notify on ALARM only and their description says what to do.
- One dashboard per stack, its body rendered from Python structures with ``Output.json_dumps``.

The parts: ``args`` (what the stack passes in), ``alarms`` (the alarm specifications and the
alarm resource), ``dashboard`` (the dashboard's tables of graphs and lines), ``component``
(``Monitoring``). This module is the package's interface: the names below are what the stack
and the tests import.
"""

from components.monitoring.alarms import (
    CLOUDWATCH_MAX_EVALUATION_SECONDS,
    AlarmSpec,
    Metric,
    alarm_specs,
    batch_alarms,
    database_alarms,
    kafka_alarms,
    lag_alarms,
    messaging_alarms,
    pipe_alarms,
    queue_alarms,
    service_alarms,
    trigger_alarms,
)
from components.monitoring.args import (
    DAY_SECONDS,
    LATENCY_TRIGGER_PERIODS,
    BatchMonitoring,
    ConsumerLagMonitoring,
    DatabaseMonitoring,
    KafkaMonitoring,
    MigrationTriggers,
    MonitoringArgs,
    PipeMonitoring,
    QueueMonitoring,
    ServiceMonitoring,
)
from components.monitoring.component import Monitoring
from components.monitoring.dashboard import dashboard_body

__all__ = [
    "CLOUDWATCH_MAX_EVALUATION_SECONDS",
    "DAY_SECONDS",
    "LATENCY_TRIGGER_PERIODS",
    "AlarmSpec",
    "BatchMonitoring",
    "ConsumerLagMonitoring",
    "DatabaseMonitoring",
    "KafkaMonitoring",
    "Metric",
    "MigrationTriggers",
    "Monitoring",
    "MonitoringArgs",
    "PipeMonitoring",
    "QueueMonitoring",
    "ServiceMonitoring",
    "alarm_specs",
    "batch_alarms",
    "dashboard_body",
    "database_alarms",
    "kafka_alarms",
    "lag_alarms",
    "messaging_alarms",
    "pipe_alarms",
    "queue_alarms",
    "service_alarms",
    "trigger_alarms",
]
