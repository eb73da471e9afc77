"""Physical names of the resources that operators and services look up by name (standard
library only).

The stack creates resources with these names and the operator commands find them with the same
functions, so the two can never disagree. Everything else (subnets, roles, rules) is named by
Pulumi's auto-naming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobstream.contract.routing import routing_parameter_name

PROJECT = "jobstream"


ADOPTABLE_NAMES = (
    "job_queue",
    "dead_letter_queue",
    "batch_compute_environment",
    "batch_job_queue",
    "batch_job_definition",
)
"""The names a stack may take from resources it adopts (``Pulumi.<stack>.yaml``'s ``adopt*``
keys): the name is part of an adopted resource's identity (replacing it would re-create it), so
the stack and the operator commands use the adopted resource's own name."""


@dataclass(frozen=True)
class Names:
    stack: str
    adopted: tuple[tuple[str, str], ...] = ()
    """(name kind, physical name) of adopted resources, kinds from ``ADOPTABLE_NAMES``."""

    def __post_init__(self) -> None:
        unknown = sorted({kind for kind, _ in self.adopted} - set(ADOPTABLE_NAMES))
        if unknown:
            raise ValueError(f"not adoptable names: {unknown} (adoptable: {ADOPTABLE_NAMES})")

    def adopting(self, **names: str | None) -> Names:
        """These names with adopted resources' own names in place of the derived ones."""
        given = dict(self.adopted) | {k: v for k, v in names.items() if v}
        return Names(self.stack, tuple(sorted(given.items())))

    def _own(self, kind: str, derived: str) -> str:
        return dict(self.adopted).get(kind, derived)

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    # messaging
    @property
    def routing_parameter(self) -> str:
        return routing_parameter_name(self.stack)

    @property
    def job_queue(self) -> str:
        return self._own("job_queue", f"{self.prefix}-jobs")

    @property
    def dead_letter_queue(self) -> str:
        return self._own("dead_letter_queue", f"{self.prefix}-jobs-dlq")

    @property
    def failed_jobs_queue(self) -> str:
        """Where Batch jobs that failed for good are captured, with their message."""
        return f"{self.prefix}-failed-jobs"

    @property
    def redrive_group(self) -> str:
        """The Kafka consumer group in which ``jobstream redrive`` keeps its progress on the
        dead-letter topic (the operator's MSK IAM policy names it for AlterGroup)."""
        return f"{self.prefix}-redrive"

    @property
    def failed_jobs_rule(self) -> str:
        return f"{self.prefix}-failed-jobs"

    # compute
    @property
    def batch_job_queue(self) -> str:
        return self._own("batch_job_queue", f"{self.prefix}-jobs")

    @property
    def batch_compute_environment_prefix(self) -> str:
        return f"{self.prefix}-ce-"

    @property
    def batch_compute_environment(self) -> str | None:
        """An adopted compute environment's exact name; None: the stack names its own
        environment with ``batch_compute_environment_prefix`` and a unique suffix."""
        return dict(self.adopted).get("batch_compute_environment")

    @property
    def batch_job_definition(self) -> str:
        return self._own("batch_job_definition", f"{self.prefix}-ml")

    @property
    def pipe(self) -> str:
        return f"{self.prefix}-sqs-to-batch"

    @property
    def ecs_cluster(self) -> str:
        return f"{self.prefix}-consumers"

    @property
    def ecs_service(self) -> str:
        return f"{self.prefix}-ml-consumer"

    # data
    @property
    def db_instance(self) -> str:
        return f"{self.prefix}-db"

    @property
    def db_proxy(self) -> str:
        return f"{self.prefix}-db-proxy"

    @property
    def kafka_cluster(self) -> str:
        return f"{self.prefix}-kafka"

    @property
    def producer_policy(self) -> str:
        return f"{self.prefix}-producer"

    # monitoring
    @property
    def alert_topic(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def alarm_prefix(self) -> str:
        return f"{self.prefix}-"

    @property
    def dashboard(self) -> str:
        return f"{self.prefix}-migration"

    def log_group(self, purpose: str) -> str:
        return f"/{PROJECT}/{self.stack}/{purpose}"


# ---- what each service accepts ------------------------------------------------------------------


@dataclass(frozen=True)
class NameRule:
    """What one AWS service accepts as a name: a length limit and a pattern.

    ``reserve`` counts characters that the service or the provider adds to the derived name
    (the 26-character unique suffix of a ``name_prefix``, the longest suffix this program
    appends), so the limit applies to what AWS finally sees."""

    service: str
    max_length: int
    pattern: str
    allowed: str
    """The pattern in words, for the error message."""
    source: str
    reserve: int = 0

    def problem(self, value: str) -> str | None:
        """Why ``value`` breaks the rule (None when it does not)."""
        if len(value) + self.reserve > self.max_length:
            extra = f" + {self.reserve} added by AWS/this program" if self.reserve else ""
            return (
                f"{len(value)} characters{extra}, more than the {self.max_length} that "
                f"{self.service} allows"
            )
        if not re.fullmatch(self.pattern, value):
            return f"{self.service} allows only {self.allowed}"
        return None


PROVIDER_UNIQUE_SUFFIX = 26
"""terraform-provider-aws ``id.UniqueIDSuffixLength``: what a ``name_prefix`` gets appended."""
LONGEST_ALARM_SLUG = 40
"""Room kept after ``alarm_prefix`` for the alarm slugs (the longest is under 40)."""

# Lowercase only: RDS itself stores identifiers in lowercase, and the provider's validation
# (terraform-provider-aws internal/service/rds/validate.go, validIdentifier; pulumi-aws runs it at
# preview) refuses any other letter: "only lowercase alphanumeric characters and hyphens allowed".
_RDS_IDENTIFIER = r"[a-z](?!.*--)[a-z0-9-]*(?<!-)"
_RDS_ALLOWED = (
    "lowercase letters, digits and hyphens, starting with a letter, no '--', not ending with '-'"
)
_SQS = NameRule(
    "SQS (queue name)",
    80,
    r"[A-Za-z0-9_-]+",
    "letters, digits, hyphens and underscores",
    "SQS CreateQueue QueueName: up to 80 characters, alphanumeric, hyphens and underscores",
)
_BATCH = NameRule(
    "AWS Batch",
    128,
    r"[A-Za-z0-9_-]+",
    "letters, digits, hyphens and underscores",
    "AWS Batch CreateJobQueue / RegisterJobDefinition / CreateComputeEnvironment: up to 128 "
    "letters, numbers, hyphens and underscores",
)
_EVENTBRIDGE_RULE = NameRule(
    "EventBridge (rule name)",
    64,
    r"[.\-_A-Za-z0-9]+",
    "letters, digits, '.', '-' and '_'",
    "EventBridge PutRule Name: 1 to 64 characters, [\\.\\-_A-Za-z0-9]+",
)

NAME_RULES: dict[str, NameRule] = {
    "routing_parameter": NameRule(
        "SSM Parameter Store",
        1011,
        r"/[A-Za-z0-9_.\-/]+",
        "letters, digits, '_', '.', '-' and '/'",
        "SSM PutParameter Name: a-zA-Z0-9_.- and '/', not prefixed aws/ssm, 2048 characters "
        "including 1037 reserved for the ARN",
    ),
    "job_queue": _SQS,
    "dead_letter_queue": _SQS,
    "failed_jobs_queue": _SQS,
    "failed_jobs_rule": _EVENTBRIDGE_RULE,
    "batch_job_queue": _BATCH,
    "batch_compute_environment_prefix": NameRule(
        _BATCH.service,
        _BATCH.max_length,
        _BATCH.pattern,
        _BATCH.allowed,
        _BATCH.source + "; the provider appends a 26-character unique suffix to name_prefix",
        reserve=PROVIDER_UNIQUE_SUFFIX,
    ),
    "batch_job_definition": _BATCH,
    "pipe": NameRule(
        "EventBridge Pipes",
        64,
        r"[.\-_A-Za-z0-9]+",
        "letters, digits, '.', '-' and '_'",
        "EventBridge Pipes API Pipe Name: length 1..64, pattern [\\.\\-_A-Za-z0-9]+",
    ),
    "ecs_cluster": NameRule(
        "Amazon ECS (cluster name)",
        255,
        r"[A-Za-z0-9_-]+",
        "letters, digits, hyphens and underscores",
        "ECS CreateCluster clusterName: up to 255 letters, numbers, hyphens and underscores",
    ),
    "ecs_service": NameRule(
        "Amazon ECS (service name, task definition family)",
        255,
        r"[A-Za-z0-9_-]+",
        "letters, digits, hyphens and underscores",
        "ECS CreateService serviceName / RegisterTaskDefinition family: up to 255 letters, "
        "numbers, hyphens and underscores",
    ),
    "db_instance": NameRule(
        "Amazon RDS (DB instance identifier)",
        63,
        _RDS_IDENTIFIER,
        _RDS_ALLOWED,
        "RDS CreateDBInstance DBInstanceIdentifier: 1 to 63 letters, numbers or hyphens; first "
        "character a letter; can't end with a hyphen or contain two consecutive hyphens; stored "
        "in lowercase, and the provider refuses uppercase (validIdentifier)",
    ),
    "db_proxy": NameRule(
        "Amazon RDS Proxy (proxy name)",
        63,
        _RDS_IDENTIFIER,
        _RDS_ALLOWED,
        "RDS CreateDBProxy DBProxyName: begins with a letter, ASCII letters, digits and hyphens, "
        "no trailing or double hyphen (the 63-character limit is the provider's identifier "
        "validation, unverified against the API reference)",
    ),
    "kafka_cluster": NameRule(
        "Amazon MSK (cluster name)",
        64 - len("-config"),
        r"[A-Za-z0-9][A-Za-z0-9-]*",
        "letters, digits and hyphens, starting with a letter or digit",
        "terraform-provider-aws aws_msk_cluster cluster_name: StringLenBetween(1, 64); the "
        "cluster configuration is named <cluster>-config, so 7 characters are kept for it",
    ),
    "redrive_group": NameRule(
        "Apache Kafka (consumer group id)",
        255,
        r"[A-Za-z0-9._-]+",
        "letters, digits, '.', '_' and '-'",
        "Kafka group.id: MSK IAM policies name groups in the ARN "
        "arn:aws:kafka:...:group/<cluster>/<uuid>/<group>, so the topic-name characters are kept",
    ),
    "producer_policy": NameRule(
        "IAM (managed policy name)",
        128,
        r"[\w+=,.@-]+",
        "letters, digits and +=,.@_-",
        "IAM CreatePolicy PolicyName: up to 128 characters, [\\w+=,.@-]+",
    ),
    "alert_topic": NameRule(
        "Amazon SNS (topic name)",
        256,
        r"[A-Za-z0-9_-]+",
        "letters, digits, hyphens and underscores",
        "SNS CreateTopic Name: up to 256 characters, alphanumeric, hyphens and underscores",
    ),
    "alarm_prefix": NameRule(
        "EventBridge (rule name <alarm prefix>batch-job-failed)",
        64 - len("batch-job-failed"),
        r"[.\-_A-Za-z0-9]+",
        "letters, digits, '.', '-' and '_'",
        _EVENTBRIDGE_RULE.source + "; the monitoring rule is <alarm prefix>batch-job-failed "
        f"and alarm names (255) keep {LONGEST_ALARM_SLUG} characters for their slug",
    ),
    "dashboard": NameRule(
        "CloudWatch (dashboard name)",
        255,
        r"[A-Za-z0-9_-]+",
        "letters, digits, hyphens and underscores",
        "CloudWatch PutDashboard DashboardName: up to 255 characters, alphanumerics, '-' and '_'",
    ),
    "log_group": NameRule(
        "CloudWatch Logs (log group name)",
        512,
        r"[.\-_/#A-Za-z0-9]+",
        "letters, digits and '.', '-', '_', '/', '#'",
        "CloudWatch Logs CreateLogGroup logGroupName: 1 to 512 characters, [\\.\\-_/#A-Za-z0-9]+",
        reserve=len("sqs-to-batch-pipe") + 1,
    ),
}
"""The rule for every name ``Names`` derives (a test requires one per property)."""


def derived_names(names: Names) -> dict[str, str]:
    """Every name the stack derives from its name, by ``NAME_RULES`` key."""
    out: dict[str, str] = {}
    for attribute in NAME_RULES:
        out[attribute] = (
            names.log_group("") if attribute == "log_group" else getattr(names, attribute)
        )
    return out


def name_problems(stack: str) -> list[tuple[str, str, str]]:
    """(name kind, derived value, why) for each derived name that its service would refuse."""
    found: list[tuple[str, str, str]] = []
    for attribute, value in derived_names(Names(stack)).items():
        why = NAME_RULES[attribute].problem(value)
        if why is not None:
            found.append((attribute, value, why))
    return found


def longest_stack_name() -> int:
    """The longest stack name whose derived names all fit their length limits."""
    probe = Names("")
    limits = []
    for attribute, rule in NAME_RULES.items():
        fixed = len(derived_names(probe)[attribute])
        limits.append(rule.max_length - rule.reserve - fixed)
    return min(limits)


def app_user_secret_name(proxy_name: str, username: str) -> str:
    """The app-user secret's name: the database component creates the secret under it and
    ``jobstream db-bootstrap`` finds it with it."""
    return f"rds-db-credentials/{proxy_name}/{username}"
