"""Idempotency ledger: the job id and the digest of its result, recorded in the same
database transaction as the result itself, so a crash leaves both or neither.

``apply`` returns ``True`` when this call applied the job and ``False`` when the job was
already recorded (a duplicate delivery: nothing is written).

Verify mode leaves a record too: ``defer_verify`` keeps the digest the Kafka consumer computed for
a job nobody has applied yet, and ``claim_verify`` hands it, once, to whoever compares it with the
applied digest (the consumer that applies the job, or the verifier if the job was applied
meanwhile), so every verified job is counted in the parity exactly once. Two implementations with the
same interface: PostgreSQL (psycopg 3; works through RDS Proxy with IAM auth tokens) and
SQLite (local runs and tests).

The result is written by a ``ResultWriter`` on the ledger's own cursor inside the
transaction; the default writes the result JSON into ``jobstream_results``. A service with
its own result tables passes its own writer (placeholders: ``%s`` on PostgreSQL, ``?`` on
SQLite).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg
    from mypy_boto3_rds import RDSClient


class SqlCursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


ResultWriter = Callable[[SqlCursor, str, Mapping[str, Any]], None]


def result_digest(result: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a result (sorted keys, no spaces)."""
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Ledger(Protocol):
    def apply(self, job_id: str, digest: str, consumer: str, result: Mapping[str, Any]) -> bool:
        """Record the job and write its result in one transaction; False if already recorded."""
        ...

    def digest_of(self, job_id: str) -> str | None:
        """The digest recorded for the job, or None when it has not been applied."""
        ...

    def defer_verify(self, job_id: str, digest: str, consumer: str) -> None:
        """Keep a verify digest for a job not applied yet (a second call keeps the first)."""
        ...

    def claim_verify(self, job_id: str) -> str | None:
        """The deferred verify digest of the job, handed out once (None: none, or claimed)."""
        ...

    def applied_count(self) -> int: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobstream_ledger (
        job_id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        consumer TEXT NOT NULL,
        applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now'))
    )""",
    """CREATE TABLE IF NOT EXISTS jobstream_results (
        job_id TEXT PRIMARY KEY,
        result TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS jobstream_verify (
        job_id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        consumer TEXT NOT NULL,
        claimed INTEGER NOT NULL DEFAULT 0
    )""",
)


def sqlite_default_writer(cur: SqlCursor, job_id: str, result: Mapping[str, Any]) -> None:
    cur.execute(
        "INSERT INTO jobstream_results (job_id, result) VALUES (?, ?)",
        (job_id, json.dumps(result, sort_keys=True)),
    )


class SqliteLedger:
    """SQLite ledger; one connection per thread, ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, path: str, *, writer: ResultWriter = sqlite_default_writer) -> None:
        self._path = path
        self._writer = writer
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        for ddl in _SQLITE_SCHEMA:
            conn.execute(ddl)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def apply(self, job_id: str, digest: str, consumer: str, result: Mapping[str, Any]) -> bool:
        conn = self._conn()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(
                "INSERT INTO jobstream_ledger (job_id, digest, consumer) VALUES (?, ?, ?) "
                "ON CONFLICT (job_id) DO NOTHING",
                (job_id, digest, consumer),
            )
            applied = cur.rowcount == 1
            if applied:
                self._writer(cur, job_id, result)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return applied

    def digest_of(self, job_id: str) -> str | None:
        row = (
            self._conn()
            .execute("SELECT digest FROM jobstream_ledger WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def defer_verify(self, job_id: str, digest: str, consumer: str) -> None:
        self._conn().execute(
            "INSERT INTO jobstream_verify (job_id, digest, consumer) VALUES (?, ?, ?) "
            "ON CONFLICT (job_id) DO NOTHING",
            (job_id, digest, consumer),
        )

    def claim_verify(self, job_id: str) -> str | None:
        row = (
            self._conn()
            .execute(
                "UPDATE jobstream_verify SET claimed = 1 WHERE job_id = ? AND claimed = 0 "
                "RETURNING digest",
                (job_id,),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def applied_count(self) -> int:
        (n,) = self._conn().execute("SELECT count(*) FROM jobstream_ledger").fetchone()
        return int(n)

    def applied(self) -> dict[str, tuple[str, str]]:
        """job id -> (consumer, applied_at) for every recorded job."""
        rows = self._conn().execute("SELECT job_id, consumer, applied_at FROM jobstream_ledger")
        return {str(j): (str(c), str(a)) for j, c, a in rows}

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


# --------------------------------------------------------------------------- PostgreSQL

_PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobstream_ledger (
        job_id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        consumer TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )""",
    """CREATE TABLE IF NOT EXISTS jobstream_results (
        job_id TEXT PRIMARY KEY,
        result JSONB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS jobstream_verify (
        job_id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        consumer TEXT NOT NULL,
        claimed BOOLEAN NOT NULL DEFAULT false,
        computed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )""",
)


def postgres_default_writer(cur: SqlCursor, job_id: str, result: Mapping[str, Any]) -> None:
    cur.execute(
        "INSERT INTO jobstream_results (job_id, result) VALUES (%s, %s)",
        (job_id, json.dumps(result, sort_keys=True)),
    )


def rds_iam_conninfo(
    *,
    host: str,
    port: int,
    user: str,
    dbname: str,
    region: str,
    rds: RDSClient,
    sslmode: str = "require",
    sslrootcert: str | None = None,
) -> str:
    """A libpq conninfo for RDS / RDS Proxy with an IAM auth token as the password.

    The token (``rds.generate_db_auth_token``, a presigned URL valid for 15 minutes) is
    signed locally from the caller's credentials; a new one is built for every connection.
    TLS is required (RDS Proxy with IAM auth refuses plain connections).
    """
    from psycopg.conninfo import make_conninfo

    if sslmode not in ("require", "verify-ca", "verify-full"):
        raise ValueError(f"IAM auth needs TLS; sslmode {sslmode!r} would allow plain text")
    token = rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
    params: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": user,
        "dbname": dbname,
        "password": token,
        "sslmode": sslmode,
    }
    if sslrootcert:
        params["sslrootcert"] = sslrootcert
    return make_conninfo(**params)


class PostgresLedger:
    """PostgreSQL ledger (psycopg 3). ``connect`` returns a new connection each call, so an
    IAM-token factory (``rds_iam_conninfo``) gets a fresh token on every reconnect."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        writer: ResultWriter = postgres_default_writer,
        create_schema: bool = True,
    ) -> None:
        self._connect = connect
        self._writer = writer
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        if create_schema:
            with self._lock:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    for ddl in _PG_SCHEMA:
                        cur.execute(ddl)

    @classmethod
    def from_conninfo(cls, conninfo: str, **kwargs: Any) -> PostgresLedger:
        import psycopg

        return cls(lambda: psycopg.connect(conninfo, autocommit=True), **kwargs)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
            self._conn.autocommit = True
        return self._conn

    def apply(self, job_id: str, digest: str, consumer: str, result: Mapping[str, Any]) -> bool:
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO jobstream_ledger (job_id, digest, consumer) "
                        "VALUES (%s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
                        (job_id, digest, consumer),
                    )
                    applied = cur.rowcount == 1
                    if applied:
                        self._writer(cur, job_id, result)
            except psycopg.OperationalError:
                conn.close()
                raise
            return applied

    def digest_of(self, job_id: str) -> str | None:
        with self._lock, self._connection().cursor() as cur:
            cur.execute("SELECT digest FROM jobstream_ledger WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def defer_verify(self, job_id: str, digest: str, consumer: str) -> None:
        with self._lock, self._connection().cursor() as cur:
            cur.execute(
                "INSERT INTO jobstream_verify (job_id, digest, consumer) VALUES (%s, %s, %s) "
                "ON CONFLICT (job_id) DO NOTHING",
                (job_id, digest, consumer),
            )

    def claim_verify(self, job_id: str) -> str | None:
        with self._lock, self._connection().cursor() as cur:
            cur.execute(
                "UPDATE jobstream_verify SET claimed = true WHERE job_id = %s AND NOT claimed "
                "RETURNING digest",
                (job_id,),
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def applied_count(self) -> int:
        with self._lock, self._connection().cursor() as cur:
            cur.execute("SELECT count(*) FROM jobstream_ledger")
            row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def applied(self) -> dict[str, tuple[str, str]]:
        with self._lock, self._connection().cursor() as cur:
            cur.execute("SELECT job_id, consumer, applied_at FROM jobstream_ledger")
            return {str(j): (str(c), a.isoformat()) for j, c, a in cur.fetchall()}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
