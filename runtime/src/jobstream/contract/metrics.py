"""Metric names of the jobstream runtime (standard library only).

Namespace ``Jobstream``; every metric carries the ``Stack`` dimension; ``METRICS`` lists each
name with its unit and extra dimensions. The emitters (``jobstream.messaging.metrics``), the
stack's alarms and dashboard, and the operator commands all take the names from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NAMESPACE = "Jobstream"

DIM_STACK = "Stack"
DIM_ROUTE = "Route"
DIM_CONSUMER = "Consumer"

JOBS_PUBLISHED = "JobsPublished"
PUBLISH_ERRORS = "PublishErrors"
SECONDARY_PUBLISH_FAILURES = "SecondaryPublishFailures"
SECONDARY_PUBLISH_REPAIRED = "SecondaryPublishRepaired"
JOBS_APPLIED = "JobsApplied"
DUPLICATES_SKIPPED = "DuplicatesSkipped"
PROCESSING_TIME = "ProcessingTime"
PROCESSING_ERRORS = "ProcessingErrors"
DEAD_LETTERED = "DeadLettered"
VERIFY_MATCHES = "VerifyMatches"
VERIFY_MISMATCHES = "VerifyMismatches"
VERIFY_DEFERRED = "VerifyDeferred"
ROUTING_STALE = "RoutingStale"

UNIT_COUNT = "Count"
UNIT_MILLISECONDS = "Milliseconds"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    dimensions: tuple[str, ...]
    """Dimensions besides ``Stack``."""
    description: str


METRICS: Mapping[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(JOBS_PUBLISHED, UNIT_COUNT, (DIM_ROUTE,), "jobs accepted by a route"),
        MetricSpec(PUBLISH_ERRORS, UNIT_COUNT, (DIM_ROUTE,), "publishes that failed on a route"),
        MetricSpec(
            SECONDARY_PUBLISH_FAILURES,
            UNIT_COUNT,
            (DIM_ROUTE,),
            "dual-write secondary writes that failed after retries (recorded for repair)",
        ),
        MetricSpec(
            SECONDARY_PUBLISH_REPAIRED,
            UNIT_COUNT,
            (DIM_ROUTE,),
            "repair-log entries re-published successfully by RepairLog.replay",
        ),
        MetricSpec(JOBS_APPLIED, UNIT_COUNT, (DIM_CONSUMER,), "job results applied"),
        MetricSpec(
            DUPLICATES_SKIPPED, UNIT_COUNT, (DIM_CONSUMER,), "deliveries the ledger suppressed"
        ),
        MetricSpec(PROCESSING_TIME, UNIT_MILLISECONDS, (DIM_CONSUMER,), "handler time per message"),
        MetricSpec(PROCESSING_ERRORS, UNIT_COUNT, (DIM_CONSUMER,), "handler failures"),
        MetricSpec(
            DEAD_LETTERED, UNIT_COUNT, (DIM_CONSUMER,), "messages parked in a dead-letter place"
        ),
        MetricSpec(VERIFY_MATCHES, UNIT_COUNT, (), "verify mode: digest equals the applied one"),
        MetricSpec(
            VERIFY_MISMATCHES, UNIT_COUNT, (), "verify mode: digest differs from the applied one"
        ),
        MetricSpec(
            VERIFY_DEFERRED,
            UNIT_COUNT,
            (),
            "verify mode: not applied yet within the wait; compared when the SQS path applies it",
        ),
        MetricSpec(
            ROUTING_STALE,
            UNIT_COUNT,
            (),
            "failed refreshes of a routing document older than a few TTLs (a service runs on an old phase)",
        ),
    )
}
