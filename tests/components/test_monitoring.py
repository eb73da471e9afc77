"""The monitoring component in the program: alert topic, alarms per phase, triggers, dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.monitoring import (
    CLOUDWATCH_MAX_EVALUATION_SECONDS,
    DAY_SECONDS,
    KafkaMonitoring,
    MigrationTriggers,
    kafka_alarms,
    trigger_alarms,
)
from infra.config import ConfigError
from infra.plan import Plan, PlannedResource, PlanSet, run_plan
from jobstream.contract import metrics as m
from jobstream.contract.names import Names

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
KEY = "aws:kms/key:Key"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
MONITORING = "jobstream:monitoring:Monitoring"
PROD = Names("prod")

PHASE_1_ALARMS = {
    "sqs-queue-depth", "sqs-oldest-message-age", "sqs-dead-letters",
    "trigger-jobs-per-day", "trigger-latency", "pipe-failures",
    "batch-failed-jobs", "batch-failed-jobs-capture",
    "rds-cpu", "rds-free-storage", "rds-proxy-auth-failures",
    "routing-stale",
}  # fmt: skip
MSK_ALARMS = {"msk-offline-partitions", "msk-active-controller"} | {
    f"msk-broker-{b}-{kind}" for b in (1, 2, 3) for kind in ("cpu", "disk", "under-replicated")
}


def monitoring_resources(plan: Plan, type_: str) -> list[PlannedResource]:
    parents = {r.urn for r in plan.of_type(MONITORING)}
    return [r for r in plan.of_type(type_) if r.parent in parents]


def alarms(plan: Plan) -> dict[str, PlannedResource]:
    """Alarm resources by name without the stack's alarm prefix."""
    prefix = Names(plan.stack).alarm_prefix
    found = {r.inputs["name"].removeprefix(prefix): r for r in monitoring_resources(plan, ALARM)}
    assert found, f"{plan.stack} phase {plan.phase} has no alarms"
    return found


def topic_arn(plan: Plan) -> str:
    return f"arn:aws:sns:{plan.config.region}:123456789012:{Names(plan.stack).alert_topic}"


def dashboard(plan: Plan) -> dict[str, Any]:
    (board,) = monitoring_resources(plan, DASHBOARD)
    assert board.inputs["dashboardName"] == Names(plan.stack).dashboard
    return json.loads(board.inputs["dashboardBody"])


def dashboard_metrics(plan: Plan) -> list[list[Any]]:
    return [
        line for w in dashboard(plan)["widgets"] if w["type"] == "metric"
        for line in w["properties"]["metrics"]
    ]  # fmt: skip


# ---- the alert topic ------------------------------------------------------------------------------


def test_alert_topic_is_encrypted_with_its_own_customer_managed_key(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    (topic,) = monitoring_resources(plan, TOPIC)
    (key,) = monitoring_resources(plan, KEY)
    assert topic.inputs["name"] == PROD.alert_topic
    assert topic.inputs["kmsMasterKeyId"].startswith("arn:aws:kms:"), topic.urn
    assert key.inputs["enableKeyRotation"] is True


def test_alert_key_lets_cloudwatch_and_eventbridge_publish(plans: PlanSet) -> None:
    (key,) = monitoring_resources(plans.get("prod", 1), KEY)
    statements = json.loads(key.inputs["policy"])["Statement"]
    (publishers,) = [s for s in statements if s.get("Sid") == "AlarmAndEventPublishersUseKey"]
    assert sorted(publishers["Principal"]["Service"]) == [
        "cloudwatch.amazonaws.com", "events.amazonaws.com",
    ]  # fmt: skip
    assert set(publishers["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_topic_policy_admits_cloudwatch_and_eventbridge_from_this_account(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    (policy,) = monitoring_resources(plan, "aws:sns/topicPolicy:TopicPolicy")
    (allow,) = [
        s for s in json.loads(policy.inputs["policy"])["Statement"] if s["Effect"] == "Allow"
    ]
    assert allow["Action"] == "sns:Publish" and allow["Resource"] == topic_arn(plan)
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_alert_email_from_config_is_subscribed(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    (sub,) = monitoring_resources(plan, "aws:sns/topicSubscription:TopicSubscription")
    assert sub.inputs == {
        "protocol": "email",
        "endpoint": plan.config.monitoring.alert_email,
        "topic": topic_arn(plan),
    }


# ---- alarms per phase ---------------------------------------------------------------------------


def test_prod_phase_1_has_the_sqs_batch_database_and_trigger_alarms_and_no_msk(
    plans: PlanSet,
) -> None:
    assert set(alarms(plans.get("prod", 1))) == PHASE_1_ALARMS


def test_phase_2_adds_the_msk_alarms_one_set_per_broker(plans: PlanSet) -> None:
    assert set(alarms(plans.get("prod", 2))) == PHASE_1_ALARMS | MSK_ALARMS


def test_prod_phase_3_adds_msk_lag_and_ecs_alarms(plans: PlanSet) -> None:
    added = set(alarms(plans.get("prod", 3))) - set(alarms(plans.get("prod", 1)))
    assert added == MSK_ALARMS | {
        "kafka-consumer-lag",
        "kafka-consumer-lag-missing",
        "ecs-running-below-desired",
    }


def test_phase_5_drops_the_sqs_pipe_trigger_alarms_and_the_batch_rule(plans: PlanSet) -> None:
    plan = plans.get("prod", 5)
    names = set(alarms(plan))
    assert not {n for n in names if n.startswith(("sqs-", "trigger-", "pipe-"))}, names
    assert monitoring_resources(plan, RULE) == []
    assert {"kafka-consumer-lag", "ecs-running-below-desired", "rds-cpu"} <= names


def test_dev_has_msk_alarms_for_its_two_brokers(plans: PlanSet) -> None:
    names = set(alarms(plans.get("dev", 3)))
    assert {"msk-broker-1-cpu", "msk-broker-2-cpu"} <= names and "msk-broker-3-cpu" not in names


@pytest.mark.parametrize("phase", [1, 3, 5])
def test_every_alarm_is_prefixed_and_notifies_the_alert_topic(plans: PlanSet, phase: int) -> None:
    plan = plans.get("prod", phase)
    for alarm in alarms(plan).values():
        assert alarm.inputs["name"].startswith(PROD.alarm_prefix), alarm.urn
        assert alarm.inputs["alarmActions"] == [topic_arn(plan)], alarm.urn
        assert alarm.inputs["alarmDescription"], alarm.urn


def test_thresholds_come_from_config(plans: PlanSet) -> None:
    plan = plans.get("prod", 3)
    mon, found = plan.config.monitoring, alarms(plan)
    assert found["sqs-queue-depth"].inputs["threshold"] == mon.queue_depth_threshold
    assert found["sqs-oldest-message-age"].inputs["threshold"] == mon.queue_age_threshold_seconds
    assert found["kafka-consumer-lag"].inputs["threshold"] == mon.consumer_lag_threshold
    assert found["msk-broker-2-cpu"].inputs["threshold"] == mon.msk_cpu_threshold_percent
    assert found["msk-broker-2-disk"].inputs["threshold"] == mon.msk_disk_threshold_percent
    assert found["rds-cpu"].inputs["threshold"] == mon.rds_cpu_threshold_percent
    assert (
        found["rds-free-storage"].inputs["threshold"] == mon.rds_free_storage_threshold_gb * 1024**3
    )


def test_a_changed_threshold_reaches_the_alarm(plans: PlanSet) -> None:
    plan = plans.get("prod", phase=1, overrides={"jobstream:queueDepthThreshold": "42"})
    assert alarms(plan)["sqs-queue-depth"].inputs["threshold"] == 42


def _queries(alarm: PlannedResource) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm.inputs["metricQueries"]}


def test_msk_cpu_alarm_adds_user_and_system_cpu_of_its_broker(plans: PlanSet) -> None:
    queries = _queries(alarms(plans.get("prod", 2))["msk-broker-3-cpu"])
    assert queries["e0"]["expression"] == "m0 + m1" and queries["e0"]["returnData"] is True
    assert [queries[i]["metric"]["metricName"] for i in ("m0", "m1")] == ["CpuUser", "CpuSystem"]
    for i in ("m0", "m1"):
        assert queries[i]["metric"]["dimensions"] == {
            "Cluster Name": PROD.kafka_cluster, "Broker ID": "3",
        }  # fmt: skip


def test_lag_alarm_watches_the_ml_consumer_group_on_the_jobs_topic(plans: PlanSet) -> None:
    plan = plans.get("prod", 3)
    lag = alarms(plan)["kafka-consumer-lag"]
    assert (lag.inputs["namespace"], lag.inputs["metricName"]) == ("AWS/Kafka", "SumOffsetLag")
    assert lag.inputs["dimensions"] == {
        "Cluster Name": PROD.kafka_cluster,
        "Consumer Group": plan.config.kafka.consumer_group,
        "Topic": plan.config.kafka.topic_name,
    }


def test_ecs_alarm_compares_running_with_desired_tasks(plans: PlanSet) -> None:
    queries = _queries(alarms(plans.get("prod", 3))["ecs-running-below-desired"])
    assert queries["e0"]["expression"] == "FILL(m0, 0) - FILL(m1, 0)"
    assert queries["m0"]["metric"]["metricName"] == "DesiredTaskCount"
    assert queries["m1"]["metric"]["metricName"] == "RunningTaskCount"
    assert queries["m1"]["metric"]["namespace"] == "ECS/ContainerInsights"
    assert queries["m1"]["metric"]["dimensions"] == {
        "ClusterName": PROD.ecs_cluster, "ServiceName": PROD.ecs_service,
    }  # fmt: skip


def test_pipe_alarm_sums_execution_and_target_stage_failures(plans: PlanSet) -> None:
    queries = _queries(alarms(plans.get("prod", 1))["pipe-failures"])
    assert {queries[i]["metric"]["metricName"] for i in ("m0", "m1")} == {
        "ExecutionFailed", "TargetStageFailed",
    }  # fmt: skip
    assert queries["m0"]["metric"]["namespace"] == "AWS/EventBridge/Pipes"
    assert queries["m0"]["metric"]["dimensions"] == {"PipeName": PROD.pipe}


def test_database_alarms_name_the_instance_and_the_proxy(plans: PlanSet) -> None:
    found = alarms(plans.get("prod", 1))
    assert found["rds-cpu"].inputs["dimensions"] == {"DBInstanceIdentifier": PROD.db_instance}
    proxy = found["rds-proxy-auth-failures"].inputs
    assert proxy["metricName"] == "ClientConnectionsSetupFailedAuth"
    assert proxy["dimensions"] == {"ProxyName": PROD.db_proxy}


def test_failed_batch_jobs_on_the_job_queue_go_to_the_alert_topic(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    (rule,) = monitoring_resources(plan, RULE)
    (target,) = monitoring_resources(plan, TARGET)
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern["source"] == ["aws.batch"]
    assert pattern["detail-type"] == ["Batch Job State Change"]
    assert pattern["detail"] == {
        "status": ["FAILED"],
        "jobQueue": [f"arn:aws:batch:us-east-1:123456789012:job-queue/{PROD.batch_job_queue}"],
    }
    assert target.inputs["rule"] == rule.inputs["name"]
    assert target.inputs["arn"] == topic_arn(plan)


# ---- migration triggers ---------------------------------------------------------------------------


def test_jobs_per_day_trigger_is_daily_metric_math_sustained_for_n_days(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    mon = plan.config.monitoring
    trigger = alarms(plan)["trigger-jobs-per-day"]
    queries = _queries(trigger)
    assert queries["m0"]["metric"] == {
        "namespace": "AWS/SQS", "metricName": "NumberOfMessagesSent", "stat": "Sum",
        "period": DAY_SECONDS, "dimensions": {"QueueName": PROD.job_queue},
    }  # fmt: skip
    assert queries["e0"]["returnData"] is True and "m0" in queries["e0"]["expression"]
    assert trigger.inputs["threshold"] == mon.trigger_jobs_per_day
    assert trigger.inputs["evaluationPeriods"] == mon.trigger_sustained_days
    assert trigger.inputs["datapointsToAlarm"] == mon.trigger_sustained_days
    assert "MIGRATION TRIGGER (volume)" in trigger.inputs["alarmDescription"]


def test_latency_trigger_uses_a_statistic_sqs_publishes_for_the_oldest_message_age(
    plans: PlanSet,
) -> None:
    """Issue 12 defect 5. CloudWatch computes percentiles from raw data points only
    (GetMetricStatistics: "CloudWatch needs raw data points to calculate percentile
    statistics"), and the SQS developer guide lists Average, Minimum, Maximum, Sum and
    SampleCount as the valid statistics of ApproximateAgeOfOldestMessage: a p99 alarm sits in
    INSUFFICIENT_DATA. The trigger watches the 5-minute Maximum."""
    plan = plans.get("prod", 1)
    mon = plan.config.monitoring
    trigger = alarms(plan)["trigger-latency"]
    inputs = trigger.inputs
    assert (inputs["metricName"], inputs.get("statistic")) == (
        "ApproximateAgeOfOldestMessage", "Maximum",
    ), f"{trigger.urn}: the latency trigger must use the Maximum statistic"  # fmt: skip
    assert "extendedStatistic" not in inputs, f"{trigger.urn}: no percentile of this metric"
    assert inputs["threshold"] == mon.trigger_latency_seconds
    assert "MIGRATION TRIGGER (latency)" in inputs["alarmDescription"]


def test_latency_trigger_counts_breaching_5_minute_periods_over_one_day(plans: PlanSet) -> None:
    """The old p99-of-a-day meaning, kept with a statistic that exists: fire when at least
    triggerLatencyBreachPercent (1 %) of the day's 288 five-minute maxima breach (3 of 288).
    PutMetricAlarm: periods under an hour may be evaluated over one day at most."""
    trigger = alarms(plans.get("prod", 1))["trigger-latency"]
    inputs = trigger.inputs
    assert (inputs["period"], inputs["evaluationPeriods"]) == (300, 288), trigger.urn
    assert inputs["period"] * inputs["evaluationPeriods"] <= DAY_SECONDS, trigger.urn
    assert inputs["datapointsToAlarm"] == 3, trigger.urn


def test_trigger_settings_from_config_reach_the_alarms(plans: PlanSet) -> None:
    plan = plans.get(
        "prod",
        phase=1,
        overrides={
            "jobstream:triggerJobsPerDay": "5000",
            "jobstream:triggerSustainedDays": "3",
            "jobstream:triggerLatencySeconds": "2.5",
            "jobstream:triggerLatencyBreachPercent": "10",
        },
    )
    found = alarms(plan)
    volume, latency = found["trigger-jobs-per-day"].inputs, found["trigger-latency"].inputs
    assert (volume["threshold"], volume["evaluationPeriods"]) == (5000, 3)
    assert (latency["threshold"], latency["datapointsToAlarm"]) == (2.5, 29)  # ceil(28.8)


def test_trigger_alarms_do_not_send_ok_notifications(plans: PlanSet) -> None:
    found = alarms(plans.get("prod", 1))
    assert found["trigger-jobs-per-day"].inputs["okActions"] == []
    assert found["sqs-queue-depth"].inputs["okActions"] != []


def test_more_sustained_days_than_cloudwatch_evaluates_are_refused() -> None:
    with pytest.raises(ConfigError) as error:
        run_plan("prod", phase=1, overrides={"jobstream:triggerSustainedDays": "8"})
    assert error.value.keys == ["triggerSustainedDays"]
    too_long = CLOUDWATCH_MAX_EVALUATION_SECONDS // DAY_SECONDS + 1
    with pytest.raises(ValueError, match="at most 7 daily periods"):
        trigger_alarms(MigrationTriggers("q", 1, too_long, 1.0, 1.0))


def test_the_old_percentile_key_is_refused_with_a_pointer_to_the_new_one() -> None:
    with pytest.raises(ConfigError, match="did you mean") as error:
        run_plan("prod", phase=1, overrides={"jobstream:triggerLatencyPercentile": "p99"})
    assert error.value.keys == ["triggerLatencyPercentile"]


# ---- what each MSK mode publishes ------------------------------------------------------------


def test_serverless_cluster_gets_no_broker_or_controller_alarms() -> None:
    """Issue 12 defect 6. The MSK serverless metrics table (Amazon MSK Developer Guide,
    'Monitor serverless clusters') lists per-topic and consumer-lag metrics only: no
    ActiveControllerCount, OfflinePartitionsCount or broker metrics, and
    ABS(FILL(ActiveControllerCount, 0) - 1) would sit in ALARM."""
    plan = run_plan(
        "prod", phase=3, overrides={"jobstream:kafkaMode": "serverless", "jobstream:kafka": "kafka"}
    )
    found = alarms(plan)
    msk = {name: a.urn for name, a in found.items() if name.startswith("msk-")}
    assert msk == {}, f"serverless cluster has provisioned-only alarms: {msk}"
    assert "kafka-consumer-lag" in found  # serverless publishes SumOffsetLag


def test_kafka_alarms_for_serverless_are_empty_and_for_provisioned_are_per_broker() -> None:
    serverless = KafkaMonitoring("c", None, 60, 80)
    provisioned = KafkaMonitoring("c", 2, 60, 80)
    assert kafka_alarms(serverless) == []
    slugs = {a.slug for a in kafka_alarms(provisioned)}
    assert {"msk-active-controller", "msk-offline-partitions", "msk-broker-2-disk"} <= slugs


def test_missing_lag_while_tasks_run_raises_an_alarm(plans: PlanSet) -> None:
    """Issue 12 defect 7. "Consumer lag metrics are emitted only if a consumer group is in a
    STABLE or EMPTY state" (Amazon MSK Developer Guide, consumer lag): in a rebalance lag
    scaling is blind. The alarm is 1 while tasks run and no lag point exists."""
    plan = plans.get("prod", 3)
    alarm = alarms(plan)["kafka-consumer-lag-missing"]
    queries = _queries(alarm)
    assert queries["e0"]["expression"] == "IF(FILL(m1, 0) > 0 AND FILL(m0, -1) < 0, 1, 0)"
    assert queries["m0"]["metric"]["metricName"] == "SumOffsetLag", alarm.urn
    assert queries["m0"]["metric"]["dimensions"]["Consumer Group"] == (
        plan.config.kafka.consumer_group
    )
    assert queries["m1"]["metric"]["metricName"] == "RunningTaskCount", alarm.urn
    assert queries["m1"]["metric"]["dimensions"] == {
        "ClusterName": PROD.ecs_cluster,
        "ServiceName": PROD.ecs_service,
    }
    assert (alarm.inputs["threshold"], alarm.inputs["evaluationPeriods"]) == (0, 3), alarm.urn


# ---- the dashboard --------------------------------------------------------------------------------


def test_dashboard_shows_every_messaging_metric_with_the_stack_dimension(plans: PlanSet) -> None:
    plan = plans.get("prod", 3)
    jobstream = [line for line in dashboard_metrics(plan) if line[0] == m.NAMESPACE]
    assert {line[1] for line in jobstream} == set(m.METRICS)
    for line in jobstream:
        dims = dict(zip(line[2:-1:2], line[3:-1:2], strict=True))
        assert dims[m.DIM_STACK] == "prod", line
        assert set(dims) == {m.DIM_STACK, *m.METRICS[line[1]].dimensions}, line


def test_dashboard_shows_jobs_published_for_each_route(plans: PlanSet) -> None:
    published = [
        line for line in dashboard_metrics(plans.get("prod", 1))
        if line[:2] == [m.NAMESPACE, m.JOBS_PUBLISHED]
    ]  # fmt: skip
    assert {line[5] for line in published} == {"sqs", "kafka"}


def test_dashboard_computes_verify_parity_from_matches_and_mismatches(plans: PlanSet) -> None:
    (widget,) = [
        w for w in dashboard(plans.get("prod", 3))["widgets"]
        if w["properties"].get("title", "").startswith("Verify parity")
    ]  # fmt: skip
    expression, matches, mismatches, deferred, stale = widget["properties"]["metrics"]
    assert expression[0]["expression"] == "100 * m0 / (m0 + m1)"
    assert (matches[1], matches[-1]["id"]) == (m.VERIFY_MATCHES, "m0")
    assert (mismatches[1], mismatches[-1]["id"]) == (m.VERIFY_MISMATCHES, "m1")
    assert (deferred[1], stale[1]) == (m.VERIFY_DEFERRED, m.ROUTING_STALE)


def test_failed_jobs_are_alarmed_where_they_are_parked(plans: PlanSet) -> None:
    names = alarms(plans.get("prod", 4))
    depth = names["batch-failed-jobs"].inputs
    assert (depth["metricName"], depth["dimensions"]) == (
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": "jobstream-prod-failed-jobs"},
    )
    capture = names["batch-failed-jobs-capture"].inputs
    assert (capture["namespace"], capture["metricName"]) == ("AWS/Events", "FailedInvocations")
    assert capture["dimensions"] == {"RuleName": "jobstream-prod-failed-jobs"}


def test_a_stale_routing_document_raises_an_alarm(plans: PlanSet) -> None:
    stale = alarms(plans.get("prod", 1))["routing-stale"].inputs
    assert (stale["namespace"], stale["metricName"]) == ("Jobstream", m.ROUTING_STALE)
    assert stale["dimensions"] == {"Stack": "prod"}
    assert (stale["comparisonOperator"], stale["threshold"]) == ("GreaterThanThreshold", 0)


def test_dashboard_shows_queue_in_phase_1_and_lag_from_phase_3(plans: PlanSet) -> None:
    def titles(phase: int) -> set[str]:
        return {
            w["properties"].get("title", "") for w in dashboard(plans.get("prod", phase))["widgets"]
        }

    assert "SQS queue depth and age" in titles(1) and "SQS queue depth and age" not in titles(5)
    lag = f"Kafka consumer lag ({plans.get('prod', 3).config.kafka.consumer_group})"
    assert lag not in titles(1) and lag in titles(3)


def test_dashboard_lists_every_alarm_and_widgets_do_not_overlap(plans: PlanSet) -> None:
    plan = plans.get("prod", 3)
    widgets = dashboard(plan)["widgets"]
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(alarms(plan))
    cells = [
        (x, y) for w in widgets
        for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])
    ]  # fmt: skip
    assert len(cells) == len(set(cells)) and max(x for x, _ in cells) < 24
