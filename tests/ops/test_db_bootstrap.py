"""``jobstream db-bootstrap``: moto (in process) for RDS and Secrets Manager, a real PostgreSQL
server for the SQL part.

moto 5.2.5 creates the RDS-managed master secret for ``ManageMasterUserPassword=True`` (with the
fixed value ``{"username": "admin", "password": "P@55w0rd!"}``); the test PostgreSQL server gets
that user, with that password, as its superuser. The server speaks TLS with a certificate for the
instance endpoint moto reports, signed by a test CA, and refuses every non-TLS TCP connection, so
the command runs exactly as against RDS through a tunnel: ``--host 127.0.0.1 --port N`` with
``sslmode=verify-full`` checking the endpoint's name (libpq ``hostaddr``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql

from jobstream.contract.names import Names, app_user_secret_name
from jobstream.messaging.ledger import PostgresLedger
from ops.aws_clients import EXIT_CHECK_FAILED, EXIT_NO_AWS, EXIT_NOT_FOUND, EXIT_OK
from rehearsal.servers import LocalPostgres, free_port
from tests.ops.conftest import STACK, Result, Seeder

APP = "jobstream_app"  # Pulumi.dev.yaml: jobstream:dbAppUsername (default)
DBNAME = "jobstream"  # Pulumi.dev.yaml: jobstream:dbName (default)
NAMES = Names(STACK)
APP_SECRET = app_user_secret_name(NAMES.db_proxy, APP)


# ---- a TLS-only PostgreSQL server ------------------------------------------------------------


class TlsPostgres:
    """``LocalPostgres`` (messaging/local.py) with TLS switched on by a config reload, a server
    certificate for a chosen host name, and pg_hba: SCRAM over TLS only."""

    def __init__(self, server: LocalPostgres, workdir: Path) -> None:
        self.server = server
        self.port = server.port
        self._owner = os.stat(server.datadir)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobstream test CA")])
        now = dt.datetime.now(dt.UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_file = workdir / "ca.pem"
        self.ca_file.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        self.hostname: str | None = None

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """The initdb superuser over the Unix socket (trust): the test's own back door."""
        return psycopg.connect(
            host=str(self.server.datadir.parent),
            port=self.port,
            user=self.server.user,
            dbname=dbname,
            autocommit=True,
        )

    def serve_tls_for(self, hostname: str) -> None:
        if hostname == self.hostname:
            return
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        data = self.server.datadir
        (data / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (data / "server.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (data / "pg_hba.conf").write_text(
            f"local all {self.server.user} trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 reject\n"
        )
        for file in ("server.crt", "server.key", "pg_hba.conf"):
            os.chown(data / file, self._owner.st_uid, self._owner.st_gid)
            os.chmod(data / file, 0o600)
        with self.admin() as conn:
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("SELECT pg_reload_conf()")
        self.hostname = hostname
        self._wait_for_tls()

    def _wait_for_tls(self) -> None:
        """The reload is asynchronous: wait until a verified TLS connection gets through."""
        import time

        deadline = time.monotonic() + 10
        while True:
            try:
                with self.admin() as conn:
                    row = conn.execute("SHOW ssl").fetchone()
                if row and row[0] == "on":
                    return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not switch TLS on")
            time.sleep(0.05)

    def login(self, user: str, password: str, *, dbname: str = DBNAME) -> psycopg.Connection[Any]:
        """A verified TLS login, as a client of the instance endpoint would make."""
        assert self.hostname is not None
        return psycopg.connect(
            host=self.hostname,
            hostaddr="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            sslmode="verify-full",
            sslrootcert=str(self.ca_file),
            connect_timeout=5,
        )


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPostgres]:
    server = LocalPostgres().start()
    try:
        tls = TlsPostgres(server, tmp_path_factory.mktemp("pg-tls"))
        with tls.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
        yield tls
    finally:
        server.stop()


# ---- the stack's live resources in moto ------------------------------------------------------


@dataclass
class Stack:
    seeder: Seeder
    master: dict[str, str]
    endpoint: str
    app_secret_arn: str

    def secret(self) -> dict[str, Any]:
        value = self.seeder.client("secretsmanager").get_secret_value(SecretId=APP_SECRET)
        return json.loads(value["SecretString"])

    def versions(self) -> list[str]:
        listed = self.seeder.client("secretsmanager").list_secret_version_ids(SecretId=APP_SECRET)
        return sorted(v["VersionId"] for v in listed["Versions"])


def seed(account: Seeder, *, proxy_lists_app_secret: bool = True) -> Stack:
    """The instance with its RDS-managed master secret, the KMS-encrypted app-user secret with
    no value (as Pulumi leaves it), and the proxy with both auths."""
    rds, sm = account.client("rds"), account.client("secretsmanager")
    db = rds.create_db_instance(
        DBInstanceIdentifier=NAMES.db_instance,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        DBName=DBNAME,
        MasterUsername="jobstream_admin",
        ManageMasterUserPassword=True,
        AllocatedStorage=20,
    )["DBInstance"]
    master_arn = db["MasterUserSecret"]["SecretArn"]
    master = json.loads(sm.get_secret_value(SecretId=master_arn)["SecretString"])
    key = account.client("kms").create_key(Description="database key")["KeyMetadata"]["Arn"]
    app_arn = sm.create_secret(
        Name=APP_SECRET, KmsKeyId=key, Description="set by `jobstream db-bootstrap`"
    )["ARN"]
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    auths = [{"AuthScheme": "SECRETS", "SecretArn": master_arn, "IAMAuth": "REQUIRED"}]
    if proxy_lists_app_secret:
        auths.append(
            {
                "AuthScheme": "SECRETS",
                "SecretArn": app_arn,
                "IAMAuth": "REQUIRED",
                "UserName": APP,
                "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
            }
        )
    rds.create_db_proxy(
        DBProxyName=NAMES.db_proxy,
        EngineFamily="POSTGRESQL",
        Auth=auths,
        RoleArn=account.role,
        VpcSubnetIds=subnets,
        RequireTLS=True,
    )
    endpoint = rds.describe_db_instances(DBInstanceIdentifier=NAMES.db_instance)["DBInstances"][0][
        "Endpoint"
    ]["Address"]
    return Stack(account, master, endpoint, app_arn)


def master_becomes_superuser(postgres: TlsPostgres, master: dict[str, str]) -> None:
    """moto's master user, with moto's master password, is the server's superuser."""
    with postgres.admin() as conn:
        user, password = master["username"], master["password"]
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )


def drop_app_role(postgres: TlsPostgres) -> None:
    with postgres.admin(DBNAME) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(APP)))
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(APP)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(APP)))


@pytest.fixture
def stack(account: Seeder, postgres: TlsPostgres) -> Iterator[Stack]:
    """A seeded account and a server whose superuser is moto's master user; the app role and
    its schema are removed afterwards."""
    live = seed(account)
    postgres.serve_tls_for(live.endpoint)
    master_becomes_superuser(postgres, live.master)
    yield live
    drop_app_role(postgres)


def bootstrap(run: Any, postgres: TlsPostgres, *extra: str, json_out: bool = True) -> Result:
    argv = [
        "db-bootstrap", "--stack", STACK, "--host", "127.0.0.1", "--port", str(postgres.port),
        "--sslrootcert", str(postgres.ca_file), "--connect-timeout", "5", *extra,
    ]  # fmt: skip
    return run(*argv, *(["--json"] if json_out else []))


def explicit_privileges(postgres: TlsPostgres) -> tuple[set[str], set[str]]:
    """(the app role's own privileges on the database, on its schema): PUBLIC's not counted."""
    with postgres.admin(DBNAME) as conn:
        db = conn.execute(
            "SELECT a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
            "WHERE d.datname = %s AND a.grantee = %s::regrole",
            (DBNAME, APP),
        ).fetchall()
        schema = conn.execute(
            "SELECT a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = %s AND a.grantee = %s::regrole",
            (APP, APP),
        ).fetchall()
    return {r[0] for r in db}, {r[0] for r in schema}


# ---- creating ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_first_run_creates_the_role_and_writes_its_credentials_to_the_app_user_secret(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    result = bootstrap(run, postgres)
    assert result.code == EXIT_OK, result.err
    doc = result.json()
    assert (doc["action"], doc["role"], doc["secret_arn"]) == ("created", APP, stack.app_secret_arn)
    assert doc["connected_to"] == {
        "host": stack.endpoint, "hostaddr": "127.0.0.1", "port": postgres.port,
        "dbname": DBNAME, "sslmode": "verify-full",
    }  # fmt: skip
    assert doc["proxy"] == {"name": NAMES.db_proxy, "uses_secret": True}
    value = stack.secret()
    assert set(value) == {"username", "password"} and value["username"] == APP
    assert len(value["password"]) == 40 and value["password"].isalnum()
    assert stack.versions() == [doc["secret_version_id"]]
    # The stored password logs the role in over verified TLS.
    with postgres.login(APP, value["password"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP,)


@pytest.mark.postgres
def test_role_gets_connect_and_a_schema_where_the_ledger_creates_its_tables(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    assert bootstrap(run, postgres).code == EXIT_OK
    assert explicit_privileges(postgres) == ({"CONNECT"}, {"USAGE", "CREATE"})
    password = stack.secret()["password"]
    ledger = PostgresLedger(lambda: postgres.login(APP, password))
    try:
        assert ledger.apply("job-1", "d1", "test", {"ok": True}) is True
    finally:
        ledger.close()
    with postgres.admin(DBNAME) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'jobstream_%' ORDER BY table_name"
        ).fetchall()
    assert tables == [
        (APP, "jobstream_ledger"),
        (APP, "jobstream_results"),
        (APP, "jobstream_verify"),
    ]


@pytest.mark.postgres
def test_the_server_receives_a_scram_verifier_never_the_password(
    postgres: TlsPostgres, monkeypatch: pytest.MonkeyPatch, stack: Stack
) -> None:
    """What psql's \\password does: PostgreSQL (and its statement log) never sees the clear text."""
    from ops.db_bootstrap import set_password

    password = "Abc123" * 6
    sent: list[str] = []
    with postgres.admin() as conn:
        execute = conn.execute

        def recording(query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(query.as_string(conn) if hasattr(query, "as_string") else str(query))
            return execute(query, *args, **kwargs)

        monkeypatch.setattr(conn, "execute", recording)
        set_password(conn, APP, password, create=True)
        (stored,) = execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP,)
        ).fetchone() or ("",)
    (statement,) = sent
    assert statement.startswith(f'CREATE ROLE "{APP}" LOGIN PASSWORD \'SCRAM-SHA-256$4096:')
    assert password not in statement, "the clear-text password was sent to the server"
    assert statement.endswith(f"{stored}'"), "the server did not store the verifier as sent"
    with postgres.login(APP, password, dbname="postgres"):
        pass


# ---- idempotence and rotation ----------------------------------------------------------------


@pytest.mark.postgres
def test_second_run_changes_nothing(run: Any, postgres: TlsPostgres, stack: Stack) -> None:
    first = bootstrap(run, postgres)
    assert first.code == EXIT_OK, first.err
    before = (stack.versions(), stack.secret())
    second = bootstrap(run, postgres)
    assert second.code == EXIT_OK, second.err
    doc = second.json()
    assert (doc["action"], doc["changes"]) == ("unchanged", [])
    assert (stack.versions(), stack.secret()) == before, "the second run wrote the secret"
    with postgres.login(APP, before[1]["password"]):
        pass


@pytest.mark.postgres
def test_second_run_restores_a_missing_grant_without_touching_the_password(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    assert bootstrap(run, postgres).code == EXIT_OK
    versions = stack.versions()
    with postgres.admin(DBNAME) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(APP)))
    doc = bootstrap(run, postgres).json()
    assert doc["action"] == "unchanged"
    assert doc["changes"] == [f"created schema {APP}", f"granted USAGE, CREATE on schema {APP}"]
    assert stack.versions() == versions
    assert explicit_privileges(postgres) == ({"CONNECT"}, {"USAGE", "CREATE"})


@pytest.mark.postgres
def test_rotate_sets_a_new_password_and_the_old_one_stops_working(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    assert bootstrap(run, postgres).code == EXIT_OK
    old = stack.secret()["password"]
    result = bootstrap(run, postgres, "--rotate")
    assert result.code == EXIT_OK, result.err
    assert result.json()["action"] == "rotated"
    new = stack.secret()["password"]
    assert new != old and len(stack.versions()) == 2
    with postgres.login(APP, new):
        pass
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        postgres.login(APP, old)


@pytest.mark.postgres
def test_a_secret_out_of_sync_with_the_role_fails_until_rotate(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    assert bootstrap(run, postgres).code == EXIT_OK
    with postgres.admin() as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD 'changed-by-hand'").format(sql.Identifier(APP))
        )
    stale = bootstrap(run, postgres)
    assert stale.code == EXIT_CHECK_FAILED
    assert "does not log 'jobstream_app' in" in stale.err and "--rotate" in stale.err
    fixed = bootstrap(run, postgres, "--rotate")
    assert fixed.code == EXIT_OK, fixed.err
    with postgres.login(APP, stack.secret()["password"]):
        pass


@pytest.mark.postgres
def test_an_existing_role_without_a_secret_value_is_left_alone_until_rotate(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    with postgres.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(APP)))
    refused = bootstrap(run, postgres)
    assert refused.code == EXIT_CHECK_FAILED
    assert "exists but the app-user secret" in refused.err and "--rotate" in refused.err
    assert stack.versions() == []
    assert bootstrap(run, postgres, "--rotate").code == EXIT_OK
    with postgres.login(APP, stack.secret()["password"]):
        pass


# ---- never the password ----------------------------------------------------------------------


@pytest.mark.parametrize("json_out", [True, False], ids=["json", "text"])
@pytest.mark.postgres
def test_no_password_ever_reaches_stdout_or_stderr(
    run: Any, postgres: TlsPostgres, stack: Stack, json_out: bool
) -> None:
    outputs: list[str] = []
    passwords = {stack.master["password"]}
    for extra in ((), (), ("--rotate",)):
        result = bootstrap(run, postgres, *extra, json_out=json_out)
        assert result.code == EXIT_OK, result.err
        outputs += [result.out, result.err]
        passwords.add(stack.secret()["password"])
    assert len(passwords) == 3  # master, created, rotated
    assert "db-bootstrap" in outputs[0] or json_out  # the text report was printed
    for text in outputs:
        for password in passwords:
            assert password not in text, "a password was printed"


# ---- errors --------------------------------------------------------------------------------


def test_missing_instance_is_a_clear_error_with_exit_6(run: Any, account: Seeder) -> None:
    result = run("db-bootstrap", "--stack", STACK)
    assert result.code == EXIT_NOT_FOUND
    assert f"RDS instance '{NAMES.db_instance}' does not exist in us-east-1" in result.err
    assert "pulumi up --stack dev" in result.err


@pytest.mark.postgres
def test_missing_app_user_secret_says_to_deploy_the_stack(
    run: Any, account: Seeder, postgres: TlsPostgres
) -> None:
    seed(account)
    account.client("secretsmanager").delete_secret(
        SecretId=APP_SECRET, ForceDeleteWithoutRecovery=True
    )
    result = bootstrap(run, postgres)
    assert result.code == EXIT_NOT_FOUND
    assert result.json()["error"]["message"] == (
        f"the app-user secret {APP_SECRET} does not exist in us-east-1"
    )


@pytest.mark.postgres
def test_unreachable_database_is_a_clear_error_with_exit_3(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    closed = free_port()
    result = run(
        "db-bootstrap", "--stack", STACK, "--host", "127.0.0.1", "--port", str(closed),
        "--sslrootcert", str(postgres.ca_file), "--connect-timeout", "2",
    )  # fmt: skip
    assert result.code == EXIT_NO_AWS
    assert result.err.startswith(
        f"error: cannot connect to PostgreSQL at {stack.endpoint}:{closed} via 127.0.0.1 "
        "(sslmode=verify-full) as the master user:"
    ), result.err
    assert "hint: run where the instance is reachable" in result.err
    assert stack.versions() == []


@pytest.mark.postgres
def test_verify_full_refuses_a_certificate_for_another_name(
    run: Any, postgres: TlsPostgres, stack: Stack
) -> None:
    """``--host localhost`` (a name, not an address) is verified as that name: the server's
    certificate names the instance endpoint, so the master password is never sent."""
    result = run(
        "db-bootstrap", "--stack", STACK, "--host", "localhost", "--port", str(postgres.port),
        "--sslrootcert", str(postgres.ca_file),
    )  # fmt: skip
    assert result.code == EXIT_NO_AWS
    assert "localhost" in result.err and "certificate" in result.err, result.err
    with postgres.admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP,)).fetchone() is None


def test_plain_text_connections_cannot_be_asked_for(run: Any, account: Seeder) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("db-bootstrap", "--stack", STACK, "--sslmode", "disable")
    assert exit_info.value.code == 2


@pytest.mark.postgres
def test_a_proxy_without_the_app_user_secret_is_reported(
    run: Any, account: Seeder, postgres: TlsPostgres
) -> None:
    live = seed(account, proxy_lists_app_secret=False)
    postgres.serve_tls_for(live.endpoint)
    master_becomes_superuser(postgres, live.master)
    try:
        result = bootstrap(run, postgres)
        assert result.code == EXIT_OK, result.err
        assert result.json()["proxy"] == {"name": NAMES.db_proxy, "uses_secret": False}
        assert f"warning: proxy {NAMES.db_proxy} does not list {live.app_secret_arn}" in result.err
    finally:
        drop_app_role(postgres)


def test_ip_literal_host_keeps_the_instance_name_for_tls() -> None:
    from ops.db_bootstrap import Instance, Target

    class Args:
        host, port, sslmode, sslrootcert, connect_timeout = (
            "127.0.0.1",
            15432,
            "verify-full",
            None,
            3,
        )

    instance = Instance("db", "db.abc.us-east-1.rds.amazonaws.com", 5432, "arn:secret")
    target = Target.of(instance, Args(), "jobstream")  # pyright: ignore[reportArgumentType]
    assert (target.server_name, target.hostaddr, target.port) == (
        "db.abc.us-east-1.rds.amazonaws.com", "127.0.0.1", 15432,
    )  # fmt: skip
    assert ipaddress.ip_address(target.hostaddr or "")
