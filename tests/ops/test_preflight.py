"""``jobstream preflight``: each gate against a moto account, pass / fail / cannot-tell."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobstream.contract import metrics as m
from tests.ops.conftest import STACK, Seeder, hours, minutes

Run = Any


def preflight(run: Run, to: int, *extra: str) -> Any:
    return run("preflight", "--stack", STACK, "--to-phase", str(to), "--json", *extra)


# ---- 1 -> 2 ---------------------------------------------------------------------------------


def test_to_2_passes_with_database_proxy_queues_and_an_empty_dlq(account: Seeder, run: Run) -> None:
    account.routing(1)
    account.database()
    account.queues(jobs=3)
    result = preflight(run, 2)
    doc = result.json()
    assert result.code == 0, doc["checks"]
    assert doc["passed"] is True and doc["direction"] == "up"
    assert [c["verdict"] for c in doc["checks"]] == ["pass"] * 5
    assert result.check("job queue")["value"] == 3


def test_to_2_fails_when_the_dlq_holds_a_message(account: Seeder, run: Run) -> None:
    account.routing(1)
    account.database()
    account.queues(dead=1)
    result = preflight(run, 2)
    assert result.code == 1
    dlq = result.check("DLQ jobstream-dev-jobs-dlq empty")
    assert dlq["verdict"] == "fail"
    assert dlq["figure"] == "1 visible, 0 in flight, 0 delayed"


def test_to_2_fails_naming_the_proxy_that_does_not_exist(account: Seeder, run: Run) -> None:
    account.routing(1)
    account.database(proxy=False)
    account.queues()
    result = preflight(run, 2)
    assert result.code == 1
    proxy = result.check("RDS Proxy jobstream-dev-db-proxy")
    assert (proxy["verdict"], proxy["figure"]) == ("fail", "not found")


# ---- 2 -> 3 ---------------------------------------------------------------------------------


def test_to_3_fails_while_moto_keeps_the_msk_cluster_creating(account: Seeder, run: Run) -> None:
    account.routing(2)
    account.kafka()  # moto: state stays CREATING
    result = preflight(run, 3)
    assert result.code == 1
    cluster = result.check("MSK cluster")
    assert (cluster["verdict"], cluster["figure"]) == ("fail", "CREATING")


def test_to_3_cannot_tell_topics_or_brokers_where_moto_does_not_answer(
    account: Seeder, run: Run
) -> None:
    account.routing(2)
    account.kafka(state="ACTIVE")
    result = preflight(run, 3)
    topics = result.check("Kafka topics present")
    brokers = result.check("routing bootstrap brokers")
    assert topics["verdict"] == "cannot-tell"
    assert "kafka:ListTopics" in topics["detail"]
    assert brokers["verdict"] == "cannot-tell"
    assert "kafka:GetBootstrapBrokers" in brokers["detail"]
    assert result.check("MSK cluster")["verdict"] == "pass"
    assert result.code == 1, "cannot-tell is not a pass"


def test_to_3_dual_write_passes_when_kafka_gets_what_sqs_gets(account: Seeder, run: Run) -> None:
    account.routing(2)
    account.kafka(state="ACTIVE")
    hourly = [(hours(h), 1000.0) for h in range(1, 20)]
    account.jobstream(m.JOBS_PUBLISHED, hourly, Route="sqs")
    account.jobstream(m.JOBS_PUBLISHED, [(hours(h), 995.0) for h in range(1, 20)], Route="kafka")
    dual = preflight(run, 3).check("dual-write")
    assert dual["verdict"] == "pass"
    assert abs(dual["value"] - 0.995) < 1e-9


def test_to_3_dual_write_fails_below_the_ratio(account: Seeder, run: Run) -> None:
    account.routing(2)
    account.kafka(state="ACTIVE")
    account.jobstream(m.JOBS_PUBLISHED, [(hours(2), 1000.0)], Route="sqs")
    account.jobstream(m.JOBS_PUBLISHED, [(hours(2), 900.0)], Route="kafka")
    account.jobstream(m.SECONDARY_PUBLISH_FAILURES, [(hours(2), 100.0)], Route="kafka")
    dual = preflight(run, 3, "--min-dual-write-ratio", "0.95").check("dual-write")
    assert dual["verdict"] == "fail"
    assert dual["figure"].startswith("90.00 %")
    assert dual["detail"] == "100 secondary publish failures to Kafka"


def test_to_3_dual_write_cannot_tell_without_traffic_in_the_window(
    account: Seeder, run: Run
) -> None:
    account.routing(2)
    account.kafka(state="ACTIVE")
    account.jobstream(m.JOBS_PUBLISHED, [(hours(30), 1000.0)], Route="sqs")  # outside 24 h
    dual = preflight(run, 3).check("dual-write")
    assert dual["verdict"] == "cannot-tell"


# ---- 3 -> 4 ---------------------------------------------------------------------------------


def _cutover_ready(account: Seeder) -> None:
    account.routing(3)
    account.queues()
    account.jobstream(m.VERIFY_MATCHES, [(hours(h), 5000.0) for h in range(1, 10)])
    account.lag([(minutes(i), 40.0) for i in range(1, 10)])


def test_to_4_passes_with_parity_low_lag_empty_dead_letters_and_quiet_alarms(
    account: Seeder, run: Run
) -> None:
    _cutover_ready(account)
    account.alarm("queue-depth", firing=False)
    result = preflight(run, 4)
    assert result.code == 0, result.json()["checks"]
    assert result.check("verify parity")["value"] == 1.0
    assert result.check("Kafka consumer lag")["figure"] == "max 40"


def test_to_4_does_not_wait_for_every_dual_written_job_to_reach_kafka(
    account: Seeder, run: Run
) -> None:
    """DESIGN.md: the SQS path keeps running through phase 4 and applies what reached SQS, so a
    lost Kafka copy costs parity, never a job: unrepaired dual-writes do not block the cutover."""
    _cutover_ready(account)
    account.jobstream(m.SECONDARY_PUBLISH_FAILURES, [(hours(6), 30.0)], Route="kafka")
    result = preflight(run, 4)
    assert result.code == 0, result.json()["checks"]
    assert not [c for c in result.json()["checks"] if "dual-written" in c["name"]]


def test_to_4_fails_while_failed_jobs_are_parked(account: Seeder, run: Run) -> None:
    account.routing(3)
    account.queues(failed=2)
    account.jobstream(m.VERIFY_MATCHES, [(hours(h), 5000.0) for h in range(1, 10)])
    account.lag([(minutes(i), 40.0) for i in range(1, 10)])
    parked = preflight(run, 4).check("failed-jobs capture")
    assert (parked["verdict"], parked["value"]) == ("fail", 2)


def test_to_4_fails_when_parity_is_below_the_threshold(account: Seeder, run: Run) -> None:
    _cutover_ready(account)
    account.jobstream(m.VERIFY_MISMATCHES, [(hours(3), 100.0)])
    parity = preflight(run, 4).check("verify parity")
    assert parity["verdict"] == "fail"
    assert abs(parity["value"] - 45000 / 45100) < 1e-9


def test_to_4_parity_threshold_is_a_flag(account: Seeder, run: Run) -> None:
    _cutover_ready(account)
    account.jobstream(m.VERIFY_MISMATCHES, [(hours(3), 100.0)])
    parity = preflight(run, 4, "--min-parity", "0.99").check("verify parity")
    assert parity["verdict"] == "pass"


def test_to_4_cannot_tell_parity_when_nothing_was_compared(account: Seeder, run: Run) -> None:
    account.routing(3)
    account.queues()
    parity = preflight(run, 4).check("verify parity")
    assert parity["verdict"] == "cannot-tell"
    assert "verify mode" in parity["detail"]


def test_to_4_fails_when_the_lag_reaches_the_threshold(account: Seeder, run: Run) -> None:
    _cutover_ready(account)
    account.lag([(minutes(3), 1500.0)])
    lag = preflight(run, 4).check("Kafka consumer lag")
    assert (lag["verdict"], lag["value"]) == ("fail", 1500.0)


def test_the_lag_gate_reads_only_its_window_a_backlog_cleared_before_it_does_not_fail(
    account: Seeder, run: Run
) -> None:
    """The rehearsal's case: a 15-second window (read in 5-second periods, as the rehearsal's
    high-resolution lag data allows) sees only the lag of those seconds. moto aggregates the raw
    points of the window whatever the period, so the period itself is not what this tests."""
    _cutover_ready(account)
    account.lag([(timedelta(seconds=50), 1500.0), (timedelta(seconds=8), 0.0)])
    lag = preflight(run, 4, "--lag-window-minutes", "0.25", "--lag-period-seconds", "5").check(
        "Kafka consumer lag"
    )
    assert (lag["verdict"], lag["value"]) == ("pass", 0.0)


def test_to_4_fails_when_the_kafka_consumer_dead_lettered(account: Seeder, run: Run) -> None:
    _cutover_ready(account)
    account.jobstream(m.DEAD_LETTERED, [(hours(5), 2.0)], Consumer="kafka")
    dead = preflight(run, 4).check("dead-letter topic jobstream.jobs.dlq")
    assert (dead["verdict"], dead["value"]) == ("fail", 2.0)


def test_to_4_fails_naming_the_alarm_in_alarm(account: Seeder, run: Run) -> None:
    _cutover_ready(account)
    name = account.alarm("consumer-lag", firing=True)
    account.alarm("queue-age", firing=False)
    alarms = preflight(run, 4).check("no alarm")
    assert alarms["verdict"] == "fail"
    assert alarms["detail"] == name


# ---- 4 -> 5 ---------------------------------------------------------------------------------


def _cleanup_ready(account: Seeder) -> None:
    """Phase 4 as the stack leaves it: the pipe running and Batch enabled, drained."""
    account.routing(4)
    account.queues()
    account.batch({"SUCCEEDED": 2, "FAILED": 1}, state="ENABLED")
    account.pipe(desired="RUNNING", current="RUNNING")


def test_to_5_passes_when_the_sqs_path_has_drained_with_the_pipe_still_running(
    account: Seeder, run: Run
) -> None:
    _cleanup_ready(account)
    account.sqs(
        "jobstream-dev-jobs",
        "ApproximateNumberOfMessagesVisible",
        [(minutes(i), 0.0) for i in range(1, 50)],
    )
    result = preflight(run, 5)
    assert result.code == 0, result.json()["checks"]
    assert "window peak 0" in result.check("job queue")["figure"]
    assert not [c for c in result.json()["checks"] if c["name"].startswith("pipe")]


def test_to_5_fails_while_failed_jobs_are_parked(account: Seeder, run: Run) -> None:
    """Phase 5 deletes the failed-jobs capture: redrive what it holds first."""
    account.routing(4)
    account.queues(failed=1)
    parked = preflight(run, 5).check("failed-jobs capture")
    assert (parked["verdict"], parked["value"]) == ("fail", 1)


def test_to_5_fails_while_messages_are_in_flight(account: Seeder, run: Run) -> None:
    _cleanup_ready(account)
    sqs = account.client("sqs")
    url = sqs.get_queue_url(QueueName="jobstream-dev-jobs")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    sqs.receive_message(QueueUrl=url)  # now in flight
    drained = preflight(run, 5).check("job queue")
    assert drained["verdict"] == "fail"
    assert drained["figure"].startswith("now 0 visible, 1 in flight")


def test_to_5_fails_when_the_queue_held_messages_within_the_window(
    account: Seeder, run: Run
) -> None:
    _cleanup_ready(account)
    account.sqs("jobstream-dev-jobs", "ApproximateNumberOfMessagesVisible", [(minutes(20), 7.0)])
    drained = preflight(run, 5).check("job queue")
    assert drained["verdict"] == "fail"
    assert "window peak 7" in drained["figure"]


def test_to_5_fails_while_batch_jobs_are_runnable_or_running(account: Seeder, run: Run) -> None:
    account.routing(4)
    account.queues()
    account.batch({"RUNNABLE": 2, "RUNNING": 1, "SUCCEEDED": 4}, state="ENABLED")
    account.pipe(desired="RUNNING", current="RUNNING")
    jobs = preflight(run, 5).check("no Batch jobs")
    assert jobs["verdict"] == "fail"
    assert jobs["figure"] == "2 RUNNABLE, 1 RUNNING"
    assert jobs["value"] == 3


# ---- rollback -------------------------------------------------------------------------------


def test_rollback_4_to_3_passes_when_everything_phase_3_needs_was_kept(
    account: Seeder, run: Run
) -> None:
    account.routing(4)
    account.database()
    account.queues()
    account.batch(state="ENABLED")
    account.pipe(desired="RUNNING", current="RUNNING")
    account.kafka(state="ACTIVE")
    account.consumer_service()
    result = preflight(run, 3)
    doc = result.json()
    assert result.code == 0, doc["checks"]
    assert doc["direction"] == "rollback"
    names = [c["name"] for c in doc["checks"]]
    assert "pipe jobstream-dev-sqs-to-batch kept" in names
    assert "Batch job queue jobstream-dev-jobs kept" in names
    assert "ECS service jobstream-dev-ml-consumer kept" in names


def test_rollback_4_to_3_fails_when_the_kept_pipe_is_gone(account: Seeder, run: Run) -> None:
    account.routing(4)
    account.database()
    account.queues()
    account.batch(state="ENABLED")
    account.kafka(state="ACTIVE")
    account.consumer_service()
    result = preflight(run, 3)
    assert result.code == 1
    pipe = result.check("pipe jobstream-dev-sqs-to-batch kept")
    assert (pipe["verdict"], pipe["figure"]) == ("fail", "not found")


def _phase_3_kept(account: Seeder) -> None:
    account.routing(3)
    account.database()
    account.queues()
    account.batch(state="ENABLED")
    account.pipe(desired="RUNNING", current="RUNNING")
    account.kafka(state="ACTIVE")


def test_rollback_3_to_2_passes_once_the_kafka_consumer_caught_up(
    account: Seeder, run: Run
) -> None:
    """Turning the Kafka consumer off must not strand a job that went to Kafka alone."""
    _phase_3_kept(account)
    account.lag([(minutes(9), 120.0), (minutes(5), 0.0), (minutes(2), 30.0)])
    result = preflight(run, 2)
    caught_up = result.check("Kafka consumer caught up")
    assert (caught_up["verdict"], caught_up["value"]) == ("pass", 0), caught_up
    assert result.code == 0, result.json()["checks"]


def test_rollback_3_to_2_fails_while_the_kafka_consumer_never_caught_up(
    account: Seeder, run: Run
) -> None:
    _phase_3_kept(account)
    account.lag([(minutes(i), 500.0 + i) for i in range(1, 10)])
    caught_up = preflight(run, 2).check("Kafka consumer caught up")
    assert (caught_up["verdict"], caught_up["figure"]) == ("fail", "lowest 501")


def test_rollback_3_to_2_does_not_count_a_zero_lag_from_before_phase_3_began(
    account: Seeder, run: Run
) -> None:
    """The routing parameter's history says when phase 3 began (the rollback from 4): a lag of 0
    before then says nothing about the jobs published to Kafka alone in phase 4."""
    account.routing(4)
    _phase_3_kept(account)  # writes phase 3 now: a second version of the parameter
    account.lag([(minutes(8), 0.0), (minutes(3), 40.0), (minutes(1), 25.0)])
    caught_up = preflight(run, 2).check("Kafka consumer caught up")
    assert caught_up["verdict"] == "fail", caught_up
    assert "phase 3 began" in caught_up["detail"]


def test_rollback_3_to_2_reads_the_whole_parameter_history_past_its_first_page(
    account: Seeder, run: Run
) -> None:
    """GetParameterHistory answers 50 versions a call at most: a stack that spent 51 versions in
    phase 4 still has its change to phase 3 on record (read from the first page alone, every
    version says phase 4 and no phase change is seen)."""
    for _ in range(51):
        account.routing(4)
    _phase_3_kept(account)
    account.lag([(minutes(8), 0.0), (minutes(3), 40.0), (minutes(1), 25.0)])
    caught_up = preflight(run, 2).check("Kafka consumer caught up")
    assert "phase 3 began" in caught_up["detail"], caught_up


def test_rollback_3_to_2_cannot_tell_without_lag_data(account: Seeder, run: Run) -> None:
    _phase_3_kept(account)
    caught_up = preflight(run, 2).check("Kafka consumer caught up")
    assert caught_up["verdict"] == "cannot-tell"


def test_rollback_4_to_3_does_not_need_the_kafka_consumer_to_catch_up(
    account: Seeder, run: Run
) -> None:
    """It stays on (primary -> verify), so nothing needs draining."""
    account.routing(4)
    account.queues()
    names = [c["name"] for c in preflight(run, 3).json()["checks"]]
    assert not [n for n in names if "caught up" in n]


# ---- bad changes and output -----------------------------------------------------------------


def test_a_change_of_two_phases_is_a_usage_error(account: Seeder, run: Run) -> None:
    account.routing(2)
    result = preflight(run, 4)
    assert result.code == 2
    assert "allowed targets: 1, 3" in result.err
    assert result.json()["error"]["kind"] == "usage"


def test_no_way_back_from_cleanup(account: Seeder, run: Run) -> None:
    account.routing(5)
    result = run("preflight", "--stack", STACK, "--to-phase", "4")
    assert result.code == 2
    assert "never back from 5" in result.err


def test_the_readable_table_names_each_check_and_the_verdict(account: Seeder, run: Run) -> None:
    account.routing(1)
    account.database()
    account.queues(dead=2)
    result = run("preflight", "--stack", STACK, "--to-phase", "2")
    assert result.code == 1
    assert "phase 1 (SQS) -> 2 (dual-write)" in result.out
    assert "2 visible, 0 in flight" in result.out
    assert "NOT READY: 4 pass, 1 fail, 0 cannot tell (exit 1)" in result.out
