"""``jobstream status`` and ``jobstream triggers`` against a moto account."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from jobstream.contract import metrics as m
from tests.ops.conftest import STACK, Seeder, hours, minutes

Run = Any


def _phase_3(account: Seeder, *, kafka_state: str = "ACTIVE") -> None:
    account.routing(3)
    account.database()
    account.queues(jobs=4, dead=0)
    account.batch({"RUNNABLE": 1, "RUNNING": 2, "SUCCEEDED": 3, "FAILED": 1})
    account.pipe(desired="RUNNING", current="RUNNING")
    account.kafka(state=kafka_state)
    account.consumer_service()
    account.lag([(minutes(2), 120.0)])
    account.jobstream(m.VERIFY_MATCHES, [(hours(2), 999.0)])
    account.jobstream(m.VERIFY_MISMATCHES, [(hours(2), 1.0)])
    account.sqs("jobstream-dev-jobs", "ApproximateAgeOfOldestMessage", [(minutes(1), 42.0)])


# ---- status ---------------------------------------------------------------------------------


def test_status_reports_every_figure_of_a_healthy_phase_3_stack(account: Seeder, run: Run) -> None:
    _phase_3(account)
    result = run("status", "--stack", STACK, "--json")
    doc = result.json()
    assert result.code == 0, doc["problems"]
    assert (doc["phase"], doc["consumer_modes"]) == (3, {"sqs": "primary", "kafka": "verify"})
    assert doc["queue"]["visible"] == 4
    assert doc["queue"]["oldest_age_seconds"] == 42.0
    assert doc["batch"]["jobs"] == {
        "SUBMITTED": 0,
        "PENDING": 0,
        "RUNNABLE": 1,
        "STARTING": 0,
        "RUNNING": 2,
        "SUCCEEDED": 3,
        "FAILED": 1,
    }
    assert doc["kafka"]["state"] == "ACTIVE"
    assert doc["consumer_lag"]["value"] == 120.0
    assert doc["parity"]["ratio"] == 0.999
    assert doc["alarms_in_alarm"] == []


def test_status_exits_1_naming_the_msk_cluster_moto_keeps_creating(
    account: Seeder, run: Run
) -> None:
    _phase_3(account, kafka_state=None)  # type: ignore[arg-type]
    result = run("status", "--stack", STACK, "--json")
    assert result.code == 1
    assert result.json()["problems"] == ["MSK cluster jobstream-dev-kafka is CREATING, not ACTIVE"]


def test_status_names_what_the_phase_needs_but_is_missing_and_alarms_firing(
    account: Seeder, run: Run
) -> None:
    account.routing(1)
    account.database()
    account.queues(dead=3)
    name = account.alarm("dlq-depth", firing=True)
    result = run("status", "--stack", STACK, "--json")
    problems = result.json()["problems"]
    assert result.code == 1
    assert (
        "Batch job queue jobstream-dev-jobs does not exist, but phase 1 (SQS) needs it" in problems
    )
    assert "pipe jobstream-dev-sqs-to-batch does not exist, but phase 1 (SQS) needs it" in problems
    assert (
        "DLQ jobstream-dev-jobs-dlq holds 3 messages (`jobstream parked`, then `jobstream redrive`)"
        in problems
    )
    assert f"1 alarm(s) in ALARM: {name}" in problems
    assert not any("MSK" in p for p in problems), "phase 1 does not need the MSK cluster"


def test_status_in_phase_1_has_no_lag_or_parity_to_read_rather_than_a_cannot_tell(
    account: Seeder, run: Run
) -> None:
    account.routing(1)
    doc = run("status", "--stack", STACK, "--json").json()
    assert doc["consumer_lag"] == {"not_applicable": "phase 1 (SQS) runs no Kafka consumer"}
    assert doc["parity"] == {
        "not_applicable": "phase 1 (SQS) runs no Kafka consumer in verify mode (parity is "
        "measured in phase 3)"
    }
    table = run("status", "--stack", STACK).out
    assert "cannot tell" not in table
    assert "not applicable: phase 1 (SQS) runs no Kafka consumer" in table


def test_status_in_phase_4_reads_the_lag_but_not_the_parity(account: Seeder, run: Run) -> None:
    account.routing(4)
    account.lag([(minutes(2), 7.0)])
    doc = run("status", "--stack", STACK, "--json").json()
    assert doc["consumer_lag"]["value"] == 7.0
    assert "not_applicable" in doc["parity"]


def test_status_table_is_readable(account: Seeder, run: Run) -> None:
    _phase_3(account)
    result = run("status", "--stack", STACK)
    assert result.code == 0
    for text in (
        "3 (consumer migration)",
        "jobstream-dev-jobs: 4 visible, 0 in flight, 0 delayed; oldest 42 s",
        "RUNNABLE 1, RUNNING 2, SUCCEEDED 3, FAILED 1",
        "jobstream-dev-kafka: ACTIVE",
        "99.900 % (1 mismatches in 1,000, 1 day)",
    ):
        assert text in result.out, text


# ---- triggers -------------------------------------------------------------------------------


def _seeded_history(account: Seeder, counts: list[float]) -> None:
    account.routing(1)
    account.queues()
    account.jobs_per_day(counts)


def test_volume_trigger_is_met_when_the_last_7_days_are_all_above_10000(
    account: Seeder, run: Run
) -> None:
    _seeded_history(account, [5000.0] * 20 + [12000.0] * 8)
    result = run("triggers", "--stack", STACK, "--json")
    volume = result.check("volume")
    assert result.code == 0
    assert volume["verdict"] == "met"
    assert volume["value"] == 7
    assert result.json()["overall"]["verdict"] == "migrate"


def test_volume_trigger_is_not_met_when_one_recent_day_is_below(account: Seeder, run: Run) -> None:
    _seeded_history(account, [12000.0] * 10 + [9000.0] + [12000.0] * 5)
    volume = run("triggers", "--stack", STACK, "--json").check("volume")
    assert volume["verdict"] == "not met"
    assert volume["figure"].startswith("6/7 recent days above")


def test_jobs_per_day_are_daily_sums_in_the_json(account: Seeder, run: Run) -> None:
    _seeded_history(account, [100.0, 200.0, 300.0])
    doc = run("triggers", "--stack", STACK, "--days", "5", "--sustained-days", "3", "--json").json()
    jobs = [d["jobs"] for d in doc["jobs_per_day"]]
    assert jobs == [0.0, 0.0, 100.0, 200.0, 300.0, 0.0]
    assert doc["jobs_per_day"][-1]["complete"] is False


def test_latency_trigger_compares_the_p99_queue_age_with_the_need(
    account: Seeder, run: Run
) -> None:
    _seeded_history(account, [100.0] * 3)
    ages = [(timedelta(minutes=5 * i), 0.0) for i in range(1, 200)]
    ages += [(timedelta(minutes=5 * i + 1002), 30.0) for i in range(1, 5)]
    account.sqs("jobstream-dev-jobs", "ApproximateAgeOfOldestMessage", ages)
    latency = run("triggers", "--stack", STACK, "--json").check("latency")
    assert latency["verdict"] == "met"
    assert latency["value"] == 30.0
    relaxed = run("triggers", "--stack", STACK, "--json", "--percentile", "p90").check("latency")
    assert (relaxed["verdict"], relaxed["value"]) == ("not met", 0.0)


def test_latency_trigger_reads_the_63_days_cloudwatch_keeps_5_minute_maxima_for(
    account: Seeder, run: Run
) -> None:
    """CloudWatch keeps 5-minute datapoints 63 days; for a start further back GetMetricData
    returns no data for a 300 s period (API Reference, MetricStat). Coarser maxima would change
    the alarm's rule, so a longer review reads the last 63 days and says so. moto keeps
    everything: the figure is what this test can see."""
    _seeded_history(account, [100.0] * 3)
    ages = [(timedelta(minutes=5 * i), 0.0) for i in range(1, 200)]
    ages += [(timedelta(minutes=5 * i + 1002), 30.0) for i in range(1, 5)]
    account.sqs("jobstream-dev-jobs", "ApproximateAgeOfOldestMessage", ages)
    within = run("triggers", "--stack", STACK, "--json", "--days", "63").check("latency")
    beyond = run("triggers", "--stack", STACK, "--json", "--days", "90").check("latency")
    assert within["figure"].endswith("5-minute maxima"), within
    assert beyond["figure"].endswith(
        "5-minute maxima of the last 63 days (CloudWatch keeps 5-minute data 63 days)"
    ), beyond
    assert beyond["value"] == within["value"] == 30.0


def test_error_trigger_uses_processing_errors_and_the_dlq_peak(account: Seeder, run: Run) -> None:
    _seeded_history(account, [1000.0] * 10)
    account.jobstream(m.PROCESSING_ERRORS, [(hours(30), 50.0)], Consumer="sqs")
    account.sqs("jobstream-dev-jobs-dlq", "ApproximateNumberOfMessagesVisible", [(hours(20), 12.0)])
    errors = run("triggers", "--stack", STACK, "--json").check("errors")
    assert errors["verdict"] == "not met"
    assert errors["value"] == 50 / 10000
    strict = run("triggers", "--stack", STACK, "--json", "--max-error-rate", "0.001").check(
        "errors"
    )
    assert strict["verdict"] == "met"


def test_triggers_cannot_tell_without_sqs_metrics(account: Seeder, run: Run) -> None:
    account.routing(1)
    account.queues()
    result = run("triggers", "--stack", STACK, "--json")
    doc = result.json()
    assert [t["verdict"] for t in doc["triggers"]] == ["cannot-tell"] * 3
    assert doc["overall"]["verdict"] == "cannot-tell"


def test_triggers_draws_a_terminal_chart_with_the_threshold(account: Seeder, run: Run) -> None:
    _seeded_history(account, [5000.0, 15000.0])
    result = run("triggers", "--stack", STACK, "--days", "3", "--sustained-days", "2")
    assert result.code == 0
    lines = [line for line in result.out.splitlines() if line[:4].isdigit()]
    assert len(lines) == 4
    below, above = lines[1], lines[2]
    assert below.endswith(" 5,000") and "|" in below, "a day below shows the threshold mark"
    assert above.endswith(" 15,000") and above.count("#") > below.count("#")
    assert lines[-1].endswith("(today, partial)")


def test_every_trigger_says_when_it_is_met_in_the_same_sense(account: Seeder, run: Run) -> None:
    """The column once mixed "met when" (volume: > 10,000/day) with "stays while" (latency:
    p99 <= 1 s, errors: <= 1 %)."""
    _seeded_history(account, [100.0] * 3)
    doc = run("triggers", "--stack", STACK, "--json").json()
    thresholds = {t["name"].split(":")[0]: t["threshold"] for t in doc["triggers"]}
    assert thresholds == {
        "volume": "> 10,000/day on each of the last 7 days",
        "latency": "p99 > 1 s",
        "errors": "errors or dead-lettered > 1.00 % of jobs sent",
    }
    table = run("triggers", "--stack", STACK).out
    assert "met when" in table and "needs" not in table


def test_triggers_png_is_written(account: Seeder, run: Run, tmp_path: Path) -> None:
    _seeded_history(account, [5000.0, 15000.0])
    png = tmp_path / "jobs.png"
    result = run("triggers", "--stack", STACK, "--png", str(png), "--json")
    assert result.json()["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_triggers_needs_the_job_queue(account: Seeder, run: Run) -> None:
    account.routing(1)
    result = run("triggers", "--stack", STACK)
    assert result.code == 6
    assert "jobstream-dev-jobs does not exist" in result.err
