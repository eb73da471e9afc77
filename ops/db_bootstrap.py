"""``jobstream db-bootstrap --stack S``: create (or rotate) the application's database user and
store its credentials in the secret that RDS Proxy reads for that user.

Pulumi creates the app-user secret without a value (components/database.py), so no password is
ever in config, code or Pulumi state. This command fills it, idempotently:

1. reads the instance (``rds:DescribeDBInstances``): endpoint, and the ARN of the master secret
   that RDS manages; reads that secret (the master user and password);
2. connects to the instance with psycopg over TLS (``--sslmode verify-full`` by default) as the
   master user;
3. creates the app role (``LOGIN``) when it is missing, with a password from
   ``secretsmanager:GetRandomPassword``; when the role exists and the secret already holds a
   password that logs in, changes nothing (``--rotate`` sets a new password);
4. grants the role ``CONNECT`` on the database, and ``USAGE, CREATE`` on a schema named like the
   role (first on PostgreSQL's default ``search_path`` ``"$user", public``, so the ledger's
   unqualified tables land there);
5. writes ``{"username", "password"}`` to the app-user secret (``PutSecretValue``) before the
   SQL transaction commits: if the write fails, the role is left as it was.

The password is sent to PostgreSQL as a SCRAM-SHA-256 verifier computed on the client (what
``psql``'s ``\\password`` does), so the clear text never reaches the server or its logs; it is
never printed, in text or JSON.

Exit codes: those of ops/aws_clients.py. 0 done (created, rotated or unchanged); 1 the command
could not finish (the secret's password does not log in, the role exists without a secret value,
an SQL statement failed, AWS answered with an error); 2 usage or configuration; 3 AWS or the
database cannot be reached (credentials, network, TLS, master login); 4 AWS denied a call; 6 the
instance, its managed master secret or the app-user secret does not exist.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobstream.contract.names import app_user_secret_name
from ops.arguments import positive_int, tcp_port
from ops.aws_clients import (
    EXIT_CHECK_FAILED,
    EXIT_NO_AWS,
    EXIT_OK,
    CannotTellError,
    NotFoundError,
    OpsError,
    ResourceMissingError,
    UsageError,
    aws_call,
    handles_errors,
)
from ops.probes import StackContext, add_stack_arguments, open_stack
from ops.report import console, key_value_table, print_json

if TYPE_CHECKING:
    import psycopg

SSL_MODES: tuple[str, ...] = ("verify-full", "verify-ca", "require")
"""TLS only: the master credentials and the new password must never travel in clear text."""
PASSWORD_LENGTH = 40
"""Letters and digits only (no punctuation: nothing to escape anywhere the value is used)."""
APPLICATION_NAME = "jobstream-db-bootstrap"
AUTH_FAILED = "authentication failed"
"""What libpq says when a login is refused (it carries no SQLSTATE for connection errors)."""


class CommandFailedError(OpsError):
    """The command could not finish; nothing or only idempotent grants were applied."""

    exit_code = EXIT_CHECK_FAILED
    kind = "failed"


class DatabaseUnreachableError(OpsError):
    exit_code = EXIT_NO_AWS
    kind = "database-unreachable"


# ---- the command line ------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "db-bootstrap",
        help="create or rotate the app database user and fill the proxy's app-user secret",
        description=(
            "Create the application's PostgreSQL role (or rotate its password with --rotate), "
            "grant it CONNECT and a schema, and write its credentials to the app-user secret "
            "that RDS Proxy reads. Idempotent. Must run where the database instance is "
            "reachable (docs/database-batch.md)."
        ),
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--rotate",
        action="store_true",
        help="set a new password even when the secret's current one works",
    )
    parser.add_argument(
        "--host",
        help=(
            "connect here instead of the instance endpoint (a tunnel). An IP address keeps "
            "--sslmode verify-full working: the certificate is still checked against the "
            "instance endpoint's name (libpq hostaddr)"
        ),
    )
    parser.add_argument(
        "--port", type=tcp_port, help="port to connect to (default: the instance's)"
    )
    parser.add_argument(
        "--sslmode",
        choices=SSL_MODES,
        default="verify-full",
        help="TLS verification (default verify-full; needs the RDS CA bundle, see --sslrootcert)",
    )
    parser.add_argument(
        "--sslrootcert",
        help=(
            "CA bundle to verify the server with, e.g. the RDS global bundle "
            "(default: libpq's: $PGSSLROOTCERT, else ~/.postgresql/root.crt)"
        ),
    )
    parser.add_argument(
        "--connect-timeout",
        type=positive_int,
        default=10,
        help="seconds per connection attempt (default %(default)s)",
    )
    parser.set_defaults(handler=run)


# ---- what the account says -------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    identifier: str
    host: str
    port: int
    master_secret_arn: str


@dataclass(frozen=True)
class AppSecret:
    arn: str
    name: str
    current: dict[str, Any] | None
    """The current value (``AWSCURRENT``), or None while the secret has none."""
    version_id: str | None


@dataclass
class Outcome:
    action: str = "unchanged"
    changes: list[str] = field(default_factory=list)
    version_id: str | None = None


@contextmanager
def _answered(action: str) -> Iterator[None]:
    """``aws_call`` plus: an error AWS answered with stops the command (exit 1)."""
    try:
        with aws_call(action):
            yield
    except CannotTellError as why:
        raise CommandFailedError(why.reason) from None


def read_instance(ctx: StackContext, identifier: str) -> Instance:
    try:
        with _answered("rds:DescribeDBInstances"):
            found = ctx.aws.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)
    except NotFoundError:
        found = {"DBInstances": []}
    instances = found.get("DBInstances", [])
    if not instances:
        raise ResourceMissingError(
            f"RDS instance {identifier!r} does not exist in {ctx.aws.region}",
            hint=f"deploy the stack first (pulumi up --stack {ctx.stack}), or check --region",
        )
    db = instances[0]
    endpoint = db.get("Endpoint") or {}
    secret = (db.get("MasterUserSecret") or {}).get("SecretArn")
    if not secret:
        raise ResourceMissingError(
            f"RDS instance {identifier!r} has no RDS-managed master secret "
            "(MasterUserSecret): the command reads the master password only from there",
            hint="enable it: aws rds modify-db-instance --manage-master-user-password ...",
        )
    if not endpoint.get("Address"):
        raise CommandFailedError(
            f"RDS instance {identifier!r} has no endpoint yet "
            f"(status {db.get('DBInstanceStatus')!r}): wait until it is available"
        )
    return Instance(identifier, str(endpoint["Address"]), int(endpoint.get("Port", 5432)), secret)


def read_json_secret(ctx: StackContext, secret_id: str, what: str) -> dict[str, Any]:
    try:
        with _answered("secretsmanager:GetSecretValue"):
            value = ctx.aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except NotFoundError:
        raise ResourceMissingError(f"{what} {secret_id} does not exist or has no value") from None
    try:
        document = json.loads(value["SecretString"])
    except (KeyError, ValueError):
        document = None
    if not isinstance(document, dict) or not {"username", "password"} <= set(document):
        raise CommandFailedError(
            f"{what} {secret_id} is not a JSON object with username and password"
        )
    return document


def read_app_secret(ctx: StackContext, name: str) -> AppSecret:
    client = ctx.aws.client("secretsmanager")
    try:
        with _answered("secretsmanager:DescribeSecret"):
            described = client.describe_secret(SecretId=name)
    except NotFoundError:
        raise ResourceMissingError(
            f"the app-user secret {name} does not exist in {ctx.aws.region}",
            hint=f"deploy this version of the stack first (pulumi up --stack {ctx.stack})",
        ) from None
    if described.get("DeletedDate"):
        raise ResourceMissingError(f"the app-user secret {name} is scheduled for deletion")
    stages: dict[str, list[str]] = described.get("VersionIdsToStages") or {}
    current = next((v for v, labels in stages.items() if "AWSCURRENT" in labels), None)
    value = read_json_secret(ctx, described["ARN"], "the app-user secret") if current else None
    return AppSecret(described["ARN"], name, value, current)


def proxy_uses_secret(ctx: StackContext, proxy_name: str, secret_arn: str) -> bool | None:
    """Whether the stack's proxy lists the secret in its auths (None: no proxy to ask)."""
    try:
        with _answered("rds:DescribeDBProxies"):
            found = ctx.aws.client("rds").describe_db_proxies(DBProxyName=proxy_name)
    except NotFoundError:
        return None
    proxies = found.get("DBProxies", [])
    if not proxies:
        return None
    return any(a.get("SecretArn") == secret_arn for a in proxies[0].get("Auth", []))


def new_password(ctx: StackContext) -> str:
    with _answered("secretsmanager:GetRandomPassword"):
        answer = ctx.aws.client("secretsmanager").get_random_password(
            PasswordLength=PASSWORD_LENGTH, ExcludePunctuation=True, RequireEachIncludedType=True
        )
    return str(answer["RandomPassword"])


def put_secret(ctx: StackContext, secret: AppSecret, username: str, password: str) -> str:
    with _answered("secretsmanager:PutSecretValue"):
        answer = ctx.aws.client("secretsmanager").put_secret_value(
            SecretId=secret.arn,
            SecretString=json.dumps({"username": username, "password": password}),
        )
    return str(answer["VersionId"])


# ---- PostgreSQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where and how to connect: the instance's name for TLS, optionally another address."""

    server_name: str
    hostaddr: str | None
    port: int
    dbname: str
    sslmode: str
    sslrootcert: str | None
    connect_timeout: int

    @classmethod
    def of(cls, instance: Instance, args: argparse.Namespace, dbname: str) -> Target:
        server_name, hostaddr = instance.host, None
        if args.host:
            try:
                hostaddr = str(ipaddress.ip_address(args.host))
            except ValueError:
                server_name = args.host  # a name: TLS verifies against that name
        return cls(
            server_name,
            hostaddr,
            args.port if args.port is not None else instance.port,
            dbname,
            args.sslmode,
            args.sslrootcert,
            args.connect_timeout,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "host": self.server_name,
            "hostaddr": self.hostaddr,
            "port": self.port,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
        }

    def connect(self, user: str, password: str) -> psycopg.Connection[Any]:
        import psycopg

        params: dict[str, Any] = {
            "host": self.server_name,
            "port": self.port,
            "dbname": self.dbname,
            "user": user,
            "password": password,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": APPLICATION_NAME,
        }
        if self.hostaddr:
            params["hostaddr"] = self.hostaddr
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        return psycopg.connect(**params)

    def where(self) -> str:
        via = f" via {self.hostaddr}" if self.hostaddr else ""
        return f"{self.server_name}:{self.port}{via} (sslmode={self.sslmode})"


def connect_master(target: Target, master: dict[str, Any]) -> psycopg.Connection[Any]:
    import psycopg

    try:
        return target.connect(str(master["username"]), str(master["password"]))
    except psycopg.OperationalError as error:
        reason = str(error).strip()
        hint = (
            "the master secret may be mid-rotation: retry in a minute"
            if AUTH_FAILED in reason
            else "run where the instance is reachable (inside the VPC, or --host 127.0.0.1 "
            "--port N through an SSM port-forwarding session; docs/database-batch.md); for "
            "verify-full pass --sslrootcert with the RDS CA bundle"
        )
        raise DatabaseUnreachableError(
            f"cannot connect to PostgreSQL at {target.where()} as the master user: {reason}",
            hint=hint,
        ) from None


def password_logs_in(target: Target, username: str, password: str) -> bool:
    """Whether ``password`` logs ``username`` in (False on a refused login, error otherwise)."""
    import psycopg

    try:
        target.connect(username, password).close()
    except psycopg.OperationalError as error:
        if AUTH_FAILED in str(error):
            return False
        raise CommandFailedError(
            f"cannot check the app user's login at {target.where()}: {str(error).strip()}"
        ) from None
    return True


def role_state(cur: psycopg.Cursor[Any], role: str) -> bool | None:
    """None: no such role; else whether it may log in."""
    cur.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,))
    row = cur.fetchone()
    return None if row is None else bool(row[0])


def _verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` (libpq ``PQencryptPasswordConn``)."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def set_password(conn: psycopg.Connection[Any], role: str, password: str, *, create: bool) -> None:
    from psycopg import sql

    statement = "CREATE ROLE {} LOGIN PASSWORD {}" if create else "ALTER ROLE {} LOGIN PASSWORD {}"
    verifier = _verifier(conn, role, password)
    conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(verifier)))


def ensure_grants(cur: psycopg.Cursor[Any], role: str, dbname: str) -> list[str]:
    """CONNECT on the database, and a schema named like the role with USAGE and CREATE for it.
    Checks the explicit grants (not PUBLIC's), so a second run changes nothing."""
    from psycopg import sql

    changes: list[str] = []
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_database d, "
        "aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a "
        "WHERE d.datname = %s AND a.grantee = %s::regrole AND a.privilege_type = 'CONNECT')",
        (dbname, role),
    )
    if not _true(cur):
        cur.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), sql.Identifier(role)
            )
        )
        changes.append(f"granted CONNECT on database {dbname}")
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (role,))
    if not _true(cur):
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(role)))
        changes.append(f"created schema {role}")
    cur.execute(
        "SELECT array_agg(a.privilege_type::text ORDER BY a.privilege_type) FROM pg_namespace n, "
        "aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a "
        "WHERE n.nspname = %s AND a.grantee = %s::regrole",
        (role, role),
    )
    row = cur.fetchone()
    held = set(row[0] or []) if row else set()
    if not {"CREATE", "USAGE"} <= held:
        cur.execute(
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
                sql.Identifier(role), sql.Identifier(role)
            )
        )
        changes.append(f"granted USAGE, CREATE on schema {role}")
    return changes


def _true(cur: psycopg.Cursor[Any]) -> bool:
    row = cur.fetchone()
    return bool(row and row[0])


# ---- the command -----------------------------------------------------------------------------


@handles_errors
def run(args: argparse.Namespace) -> int:
    ctx = open_stack(args)
    db = ctx.cfg.database
    role = db.app_username
    if role == db.master_username:
        raise UsageError(
            f"the app user {role!r} is the master user: set jobstream:dbAppUsername to another name"
        )
    identifier = db.existing_instance_id or ctx.names.db_instance
    instance = read_instance(ctx, identifier)
    master = read_json_secret(ctx, instance.master_secret_arn, "the master secret")
    if master["username"] == role:
        raise UsageError(f"the app user {role!r} is the instance's master user")
    secret = read_app_secret(ctx, app_user_secret_name(ctx.names.db_proxy, role))
    if secret.current is not None and secret.current.get("username") != role and not args.rotate:
        raise CommandFailedError(
            f"the app-user secret {secret.name} holds user {secret.current.get('username')!r}, "
            f"not {role!r}",
            hint="rerun with --rotate to overwrite it",
        )
    target = Target.of(instance, args, db.name)
    outcome = apply(ctx, target, master, role, secret, rotate=args.rotate)
    uses = proxy_uses_secret(ctx, ctx.names.db_proxy, secret.arn)

    document: dict[str, Any] = {
        "stack": ctx.stack,
        "region": ctx.aws.region,
        "instance": instance.identifier,
        "connected_to": target.describe(),
        "role": role,
        "schema": role,
        "action": outcome.action,
        "changes": outcome.changes,
        "secret_arn": secret.arn,
        "secret_version_id": outcome.version_id or secret.version_id,
        "proxy": {"name": ctx.names.db_proxy, "uses_secret": uses},
        "exit_code": EXIT_OK,
    }
    if uses is False:
        print(
            f"warning: proxy {ctx.names.db_proxy} does not list {secret.arn} in its auths; "
            f"clients cannot sign in as {role} until `pulumi up --stack {ctx.stack}` adds it",
            file=sys.stderr,
        )
    if args.json:
        print_json(document)
        return EXIT_OK
    rows = [
        ("instance", f"{instance.identifier} ({target.where()})"),
        ("role", role),
        ("schema", role),
        ("action", outcome.action),
        ("changes", "; ".join(outcome.changes) or "none"),
        ("secret", f"{secret.arn} (version {document['secret_version_id']})"),
        ("proxy uses it", {True: "yes", False: "NO", None: "no proxy found"}[uses]),
    ]
    console().print(key_value_table(f"db-bootstrap: stack {ctx.stack} ({ctx.aws.region})", rows))
    return EXIT_OK


def apply(
    ctx: StackContext,
    target: Target,
    master: dict[str, Any],
    role: str,
    secret: AppSecret,
    *,
    rotate: bool,
) -> Outcome:
    import psycopg

    outcome = Outcome()
    with connect_master(target, master) as conn:
        try:
            with conn.transaction(), conn.cursor() as cur:
                can_login = role_state(cur, role)
                if can_login is None:
                    outcome.action = "created"
                elif rotate:
                    outcome.action = "rotated"
                elif secret.current is None:
                    raise CommandFailedError(
                        f"role {role!r} exists but the app-user secret {secret.name} has no "
                        "value: its password is unknown",
                        hint="rerun with --rotate to set a new password and store it",
                    )
                elif not can_login or not password_logs_in(
                    target, role, str(secret.current["password"])
                ):
                    raise CommandFailedError(
                        f"the password in {secret.name} does not log {role!r} in "
                        "(out of sync with the database)",
                        hint="rerun with --rotate to set a new password and store it",
                    )
                password: str | None = None
                if outcome.action != "unchanged":
                    password = new_password(ctx)
                    set_password(conn, role, password, create=can_login is None)
                    outcome.changes.append(f"{outcome.action} role {role} (LOGIN, new password)")
                outcome.changes.extend(ensure_grants(cur, role, target.dbname))
                if password is not None:
                    # Before COMMIT: if the secret cannot be written, the role stays as it was.
                    outcome.version_id = put_secret(ctx, secret, role, password)
                    outcome.changes.append(f"wrote the credentials to {secret.name}")
        except psycopg.Error as error:
            raise CommandFailedError(
                f"PostgreSQL refused a statement on {target.where()}: {str(error).strip()}"
            ) from None
    return outcome
