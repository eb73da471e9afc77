"""Physical names of the resources that operators and services look up by name (standard
library only).

The stack creates resources with these names and the operator commands find them with the same
functions, so the two can never disagree. Everything else (subnets, roles, rules) is named by
Pulumi's auto-naming.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobstream.contract.routing import routing_parameter_name

PROJECT = "jobstream"


@dataclass(frozen=True)
class Names:
    stack: str

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    # messaging
    @property
    def routing_parameter(self) -> str:
        return routing_parameter_name(self.stack)

    @property
    def job_queue(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-jobs-dlq"

    @property
    def failed_jobs_queue(self) -> str:
        """Where Batch jobs that failed for good are captured, with their message."""
        return f"{self.prefix}-failed-jobs"

    @property
    def failed_jobs_rule(self) -> str:
        return f"{self.prefix}-failed-jobs"

    # compute
    @property
    def batch_job_queue(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def batch_compute_environment_prefix(self) -> str:
        return f"{self.prefix}-ce-"

    @property
    def batch_job_definition(self) -> str:
        return f"{self.prefix}-ml"

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


def app_user_secret_name(proxy_name: str, username: str) -> str:
    """The app-user secret's name: the database component creates the secret under it and
    ``jobstream db-bootstrap`` finds it with it."""
    return f"rds-db-credentials/{proxy_name}/{username}"
