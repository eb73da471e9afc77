from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import psycopg.conninfo
import pytest

from jobstream.messaging import aws
from jobstream.messaging.ledger import (
    Ledger,
    PostgresLedger,
    SqlCursor,
    SqliteLedger,
    rds_iam_conninfo,
    result_digest,
)
from rehearsal.servers import LocalPostgres, use_dummy_aws_credentials


class WriterFailedError(Exception):
    pass


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        lg: Ledger = SqliteLedger(str(tmp_path / "ledger.db"))
    else:
        server: LocalPostgres = request.getfixturevalue("postgres_server")
        with psycopg.connect(server.conninfo, autocommit=True) as conn:
            conn.execute(
                "DROP TABLE IF EXISTS jobstream_ledger, jobstream_results, jobstream_verify"
            )
        lg = PostgresLedger.from_conninfo(server.conninfo)
    yield lg
    lg.close()


def test_first_apply_records_the_job_and_its_digest(ledger: Ledger) -> None:
    assert ledger.apply("job-1", "d1", "sqs", {"v": 1}) is True
    assert ledger.digest_of("job-1") == "d1"


def test_second_apply_of_the_same_job_is_a_duplicate(ledger: Ledger) -> None:
    ledger.apply("job-1", "d1", "sqs", {"v": 1})
    assert ledger.apply("job-1", "d1", "kafka", {"v": 1}) is False
    assert ledger.applied_count() == 1


def test_unapplied_job_has_no_digest(ledger: Ledger) -> None:
    assert ledger.digest_of("never") is None


def test_deferred_verify_digest_is_handed_out_once(ledger: Ledger) -> None:
    ledger.defer_verify("job-1", "dv", "kafka")
    assert ledger.claim_verify("job-1") == "dv"
    assert ledger.claim_verify("job-1") is None, "a deferred digest was claimed twice"


def test_second_deferral_keeps_the_first_digest(ledger: Ledger) -> None:
    """A redelivered verify message must not count in the parity twice."""
    ledger.defer_verify("job-1", "first", "kafka")
    ledger.defer_verify("job-1", "second", "kafka")
    assert ledger.claim_verify("job-1") == "first"
    assert ledger.claim_verify("job-1") is None


def test_nothing_to_claim_for_a_job_never_deferred(ledger: Ledger) -> None:
    assert ledger.claim_verify("job-1") is None


def _failing_writer(cur: SqlCursor, job_id: str, result: Any) -> None:
    raise WriterFailedError(job_id)


def test_failed_result_write_leaves_no_ledger_row_sqlite(tmp_path: Path) -> None:
    lg = SqliteLedger(str(tmp_path / "l.db"), writer=_failing_writer)
    with pytest.raises(WriterFailedError):
        lg.apply("job-1", "d", "sqs", {})
    assert lg.digest_of("job-1") is None


@pytest.mark.postgres
def test_failed_result_write_leaves_no_ledger_row_postgres(postgres_server: LocalPostgres) -> None:
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS jobstream_ledger, jobstream_results")
    lg = PostgresLedger.from_conninfo(postgres_server.conninfo, writer=_failing_writer)
    with pytest.raises(WriterFailedError):
        lg.apply("job-1", "d", "sqs", {})
    assert lg.digest_of("job-1") is None


@pytest.mark.postgres
def test_result_is_written_in_the_ledger_transaction_postgres(
    postgres_server: LocalPostgres,
) -> None:
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS jobstream_ledger, jobstream_results")
    lg = PostgresLedger.from_conninfo(postgres_server.conninfo)
    lg.apply("job-1", result_digest({"score": 0.5}), "sqs", {"score": 0.5})
    with psycopg.connect(postgres_server.conninfo) as conn:
        row = conn.execute("SELECT result FROM jobstream_results WHERE job_id = 'job-1'").fetchone()
    assert row == ({"score": 0.5},)


def test_concurrent_applies_of_one_job_apply_it_once(tmp_path: Path) -> None:
    lg = SqliteLedger(str(tmp_path / "l.db"))
    outcomes: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        ok = lg.apply("job-1", "d", "sqs", {"x": 1})
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False] * 7 + [True]


def test_digest_ignores_key_order() -> None:
    assert result_digest({"a": 1, "b": 2}) == result_digest({"b": 2, "a": 1})


def test_rds_iam_conninfo_uses_a_signed_token_over_tls() -> None:
    """No network: the RDS IAM token is a URL presigned locally from (dummy) credentials."""
    use_dummy_aws_credentials()
    rds = aws.client("rds", region="eu-west-1")
    conninfo = rds_iam_conninfo(
        host="proxy.example.eu-west-1.rds.amazonaws.com",
        port=5432,
        user="ml_service",
        dbname="jobs",
        region="eu-west-1",
        rds=rds,
    )
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    assert params["sslmode"] == "require"
    token = str(params["password"])
    assert token.startswith("proxy.example.eu-west-1.rds.amazonaws.com:5432/?")
    query = parse_qs(urlsplit("https://" + token).query)
    assert query["Action"] == ["connect"]
    assert query["DBUser"] == ["ml_service"]
    assert "X-Amz-Signature" in query


def test_rds_iam_conninfo_refuses_plain_text() -> None:
    use_dummy_aws_credentials()
    with pytest.raises(ValueError, match="needs TLS"):
        rds_iam_conninfo(
            host="h", port=5432, user="u", dbname="d", region="eu-west-1",
            rds=aws.client("rds", region="eu-west-1"), sslmode="disable",
        )  # fmt: skip
