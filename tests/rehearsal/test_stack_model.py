"""What the rehearsal takes from the offline plan: the stack's own resources and rules."""

from __future__ import annotations

import pytest

from rehearsal.stack_model import RetryRule, RetryStrategy, StackModel, StackModelError

STEPS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def dev() -> StackModel:
    return StackModel.from_stack("dev", STEPS)


def test_the_queues_take_the_plans_attributes_and_redrive_count(dev: StackModel) -> None:
    assert dev.job_queue.name == "jobstream-dev-jobs"
    assert dev.job_queue.attributes["VisibilityTimeout"] == "3600"
    assert dev.job_queue.attributes["MessageRetentionPeriod"] == "345600"
    assert dev.dead_letter_queue.name == "jobstream-dev-jobs-dlq"
    assert dev.max_receive_count == 5
    assert dev.failed_jobs_queue.name == "jobstream-dev-failed-jobs"


def test_a_config_override_changes_the_rehearsal() -> None:
    model = StackModel.from_stack(
        "dev",
        STEPS,
        {"jobstream:maxReceiveCount": "2", "jobstream:queueVisibilityTimeoutSeconds": "2400"},
    )
    assert model.max_receive_count == 2
    assert model.job_queue.attributes["VisibilityTimeout"] == "2400"


def test_the_failed_jobs_capture_is_the_plans_rule(dev: StackModel) -> None:
    assert dev.failed_jobs_rule == "jobstream-dev-failed-jobs"
    assert dev.failed_jobs_pattern["detail"] == {
        "status": ["FAILED"],
        "jobQueue": [dev.batch_job_queue_arn],
    }


def test_the_jobs_run_with_the_job_definitions_environment_and_retry_rules(
    dev: StackModel,
) -> None:
    assert dev.job_environment["JOBSTREAM_CONSUMER"] == "sqs"
    assert dev.pipe_overrides == {
        "JOBSTREAM_JOB_MESSAGE": "$.body",
        "JOBSTREAM_SQS_MESSAGE_ID": "$.messageId",
    }
    assert dev.retry.attempts == 3
    assert dev.max_concurrent_jobs == 8  # dev: batchMaxVcpus 8 / jobVcpu 1
    assert dev.compute_type == "FARGATE_SPOT"


def test_the_topics_and_the_routing_per_phase_are_the_plans(dev: StackModel) -> None:
    assert {t.name: t.partitions for t in dev.topics} == {
        "jobstream.jobs": 6,
        "jobstream.jobs.dlq": 1,
    }
    assert {n: r.mode("sqs") for n, r in dev.routings.items()} == {
        1: "primary",
        2: "primary",
        3: "primary",
        4: "drain",
    }
    assert dev.service_environment["JOBSTREAM_CONSUMER"] == "kafka"


def test_the_rehearsal_does_not_visit_cleanup() -> None:
    with pytest.raises(StackModelError, match="phase 5"):
        StackModel.from_stack("dev", (4, 5))


def test_a_spot_interruption_is_retried_and_an_application_exit_is_not(dev: StackModel) -> None:
    """AWS Batch RetryStrategy: the first matching evaluateOnExit entry decides."""
    spot = "Your Spot Task was interrupted."
    assert dev.retry.retries(status_reason=spot, reason="", exit_code=137)
    assert dev.retry.retries(
        status_reason="Essential container in task exited", reason="", exit_code=75
    )
    assert not dev.retry.retries(
        status_reason="Essential container in task exited", reason="", exit_code=70
    )


def test_a_failure_that_matches_no_rule_is_retried() -> None:
    """'If none of the EvaluateOnExit conditions in a RetryStrategy match, then the job is
    retried' (AWS Batch API reference, EvaluateOnExit)."""
    strategy = RetryStrategy(3, (RetryRule("EXIT", on_exit_code="70"),))
    assert strategy.retries(status_reason="x", reason="", exit_code=1)
    assert not strategy.retries(status_reason="x", reason="", exit_code=70)


def test_a_pattern_matches_a_prefix_only_with_a_trailing_star() -> None:
    rule = RetryRule("RETRY", on_reason="CannotPull*")
    assert rule.matches(status_reason="", reason="CannotPullContainerError: x", exit_code=None)
    assert not RetryRule("RETRY", on_reason="CannotPull").matches(
        status_reason="", reason="CannotPullContainerError", exit_code=None
    )
