"""PostgreSQL on RDS behind RDS Proxy (or the proxy alone, in front of an existing instance).

The database admits only the proxy on 5432; the proxy admits only the client security groups
that callers register with ``allow_client``. Clients authenticate to the proxy with IAM
(``grant_connect`` gives a role ``rds-db:connect`` for one database user on this proxy) over
TLS. RDS Proxy logs in to PostgreSQL with credentials it reads from Secrets Manager, one secret
per database user a client may sign in as:

- the master user: the secret RDS itself keeps (``manage_master_user_password``);
- the application user (``app_username``): a secret this component creates *without a value*
  (no ``SecretVersion``), encrypted with the database's KMS key. ``jobstream db-bootstrap``
  (ops/db_bootstrap.py) creates the PostgreSQL role and writes ``{"username", "password"}``
  into it, so the password never exists in config, code or Pulumi state.

The proxy's role may read exactly those two secrets and decrypt them only through Secrets
Manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.iam import assume_role_policy, policy_document
from components.kms import customer_managed_key
from components.security_groups import POSTGRES_PORT, security_group, tcp_rule
from jobstream.contract.names import app_user_secret_name

ENGINE = "postgres"
LOG_EXPORTS: tuple[str, ...] = ("postgresql", "upgrade")
SECRET_KMS_VIA_SERVICE = "secretsmanager.{region}.amazonaws.com"
CLIENT_PASSWORD_AUTH_TYPE = "POSTGRES_SCRAM_SHA_256"
"""How the proxy authenticates clients on the PostgreSQL wire (the IAM token is the password)."""
APP_USER_SECRET_RECOVERY_DAYS = 7
"""The value is reproducible (``jobstream db-bootstrap --rotate``): the shortest recovery window."""
FINAL_SNAPSHOT_SUFFIX_BYTES = 4
"""8 hex characters after ``<identifier>-final-``."""


def final_snapshot_keepers(
    identifier: str, db_name: str, username: str, kms_key_id: pulumi.Input[str]
) -> dict[str, pulumi.Input[str]]:
    """What renews the final snapshot's random suffix: the instance's identifier and every input
    of the instance that forces a new instance (infra/replacement.py, RDS Instance). A fixed
    ``final_snapshot_identifier`` fails the second deletion of an instance with the same
    identifier ("DBSnapshotAlreadyExists", terraform-aws-modules/terraform-aws-rds #82); a
    random suffix that Pulumi keeps in state, renewed whenever the instance is replaced or
    recreated, gives each incarnation its own snapshot name."""
    return {
        "identifier": identifier,
        "engine": ENGINE,
        "dbName": db_name,
        "username": username,
        "kmsKeyId": kms_key_id,
        "storageEncrypted": "true",
    }


@dataclass(frozen=True)
class DatabaseArgs:
    instance_identifier: str
    """Physical name of the instance (``Names.db_instance``); unused when fronting an existing one."""
    proxy_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    instance_class: str
    engine_version: str
    """The major version ("16") while ``auto_minor_version_upgrade``: the provider then keeps it
    without a diff after RDS upgrades the minor (engine_version_actual holds the running one)."""
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    db_name: str
    master_username: str
    app_username: str
    """The database user that clients (Batch jobs, the consumer) sign in as through the proxy;
    never the master user (infra/config refuses dbAppUsername = dbMasterUsername)."""
    multi_az: bool
    deletion_protection: bool
    """Deletion protection on the instance, and a final snapshot when it is deleted."""
    backup_retention_days: int
    log_retention_days: int
    proxy_max_connections_percent: int
    proxy_max_idle_connections_percent: int
    proxy_connection_borrow_timeout_seconds: int
    proxy_idle_client_timeout_seconds: int
    auto_minor_version_upgrade: bool
    performance_insights: bool
    performance_insights_retention_days: int
    """7 days is Performance Insights' free tier."""
    existing_instance_id: str | None
    """Front this existing instance (same VPC, RDS-managed master password) instead of creating one."""
    protect: bool


def parameter_group_family(engine_version: str) -> str:
    """``16.4`` -> ``postgres16`` (the family follows the major version)."""
    return f"{ENGINE}{engine_version.split('.')[0]}"


class Database(pulumi.ComponentResource):
    proxy_endpoint: pulumi.Output[str]
    proxy_arn: pulumi.Output[str]
    proxy_resource_id: pulumi.Output[str]
    """The ``prx-...`` id that ``rds-db:connect`` ARNs name."""
    proxy_security_group_id: pulumi.Output[str]
    instance_identifier: str
    instance_arn: pulumi.Output[str] | None
    """The created instance's ARN (None when fronting an existing instance)."""
    kms_key_arn: pulumi.Output[str] | None
    """The key encrypting storage and the master secret (None when fronting an existing one)."""
    app_user_secret_arn: pulumi.Output[str]
    """The proxy's secret for ``app_username`` (value written by ``jobstream db-bootstrap``)."""

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:database:Database", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=args.protect)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self._region = aws.get_region_output(opts=invoke).region
        self._account = aws.get_caller_identity_output(opts=invoke).account_id
        self._partition = aws.get_partition_output(opts=invoke).partition

        proxy_sg = security_group(
            self,
            f"{name}-proxy",
            vpc_id=args.vpc_id,
            description=f"{args.proxy_name}: PostgreSQL from registered clients only",
            tag_name=args.proxy_name,
        )
        self.proxy_security_group_id = proxy_sg.id

        secret_arn: pulumi.Input[str]
        secret_kms_key_arn: pulumi.Input[str]
        target_security_group_ids: list[pulumi.Input[str]]
        if args.existing_instance_id is None:
            key = customer_managed_key(
                self,
                f"{name}-key",
                alias=args.instance_identifier,
                description=f"{args.instance_identifier}: storage and master secret",
                protect=args.protect,
            )
            instance, db_sg = self._instance(name, args, key, proxy_sg)
            self.instance_identifier = args.instance_identifier
            self.instance_arn = instance.arn
            self.kms_key_arn = key.arn
            secret_arn = instance.master_user_secrets.apply(_secret_arn)
            secret_kms_key_arn = key.arn
            target_security_group_ids = [db_sg.id]
            target_dependency: list[pulumi.Resource] = [instance]
        else:
            existing = aws.rds.get_instance(
                db_instance_identifier=args.existing_instance_id,
                opts=pulumi.InvokeOptions(parent=self),
            )
            if not existing.master_user_secrets:
                raise ValueError(
                    f"RDS instance {args.existing_instance_id!r} does not keep its master "
                    "password in Secrets Manager; enable manage_master_user_password on it "
                    "before putting the proxy in front of it"
                )
            self.instance_identifier = args.existing_instance_id
            self.instance_arn = None
            self.kms_key_arn = None
            secret_arn = existing.master_user_secrets[0].secret_arn
            secret_kms_key_arn = existing.master_user_secrets[0].kms_key_id
            target_security_group_ids = list(existing.vpc_security_groups)
            # The existing instance's security groups must admit the proxy: one rule each,
            # owned by this stack (the groups themselves are not).
            for i, group_id in enumerate(target_security_group_ids):
                self._postgres_from(
                    f"{name}-existing-{i}-from-proxy", group_id, proxy_sg.id, "the RDS Proxy"
                )
            target_dependency = []

        # The proxy talks to the database only.
        for i, group_id in enumerate(target_security_group_ids):
            tcp_rule(
                self,
                f"{name}-proxy-to-db-{i}",
                "egress",
                group_id=proxy_sg.id,
                port=POSTGRES_PORT,
                description="PostgreSQL to the database",
                peer_group=group_id,
            )

        # The app user's credentials for the proxy. Pulumi creates the secret only: its value is
        # written by `jobstream db-bootstrap`, so no SecretVersion and no password in state.
        # Encrypted with the database's key (the master secret's key when fronting an existing
        # instance), which the proxy role already decrypts through Secrets Manager.
        app_secret = aws.secretsmanager.Secret(
            f"{name}-app-user",
            name=app_user_secret_name(args.proxy_name, args.app_username),
            description=(
                f"{args.proxy_name}: credentials of database user {args.app_username} for the "
                "RDS Proxy; the value is set by `jobstream db-bootstrap`, never by Pulumi"
            ),
            kms_key_id=secret_kms_key_arn,
            recovery_window_in_days=APP_USER_SECRET_RECOVERY_DAYS,
            tags={"Name": app_user_secret_name(args.proxy_name, args.app_username)},
            opts=stateful,
        )
        self.app_user_secret_arn = app_secret.arn

        proxy = self._proxy(name, args, proxy_sg, secret_arn, secret_kms_key_arn, app_secret.arn)
        group = aws.rds.ProxyDefaultTargetGroup(
            f"{name}-proxy",
            db_proxy_name=proxy.name,
            connection_pool_config={
                "max_connections_percent": args.proxy_max_connections_percent,
                "max_idle_connections_percent": args.proxy_max_idle_connections_percent,
                "connection_borrow_timeout": args.proxy_connection_borrow_timeout_seconds,
            },
            opts=child,
        )
        aws.rds.ProxyTarget(
            f"{name}-proxy",
            db_proxy_name=proxy.name,
            target_group_name=group.name,
            db_instance_identifier=self.instance_identifier,
            opts=pulumi.ResourceOptions(parent=self, depends_on=target_dependency),
        )

        self.proxy_endpoint = proxy.endpoint
        self.proxy_arn = proxy.arn
        self.proxy_resource_id = proxy.arn.apply(lambda arn: arn.rsplit(":", 1)[-1])
        self.register_outputs(
            {
                "proxyEndpoint": self.proxy_endpoint,
                "proxyArn": self.proxy_arn,
                "proxySecurityGroupId": self.proxy_security_group_id,
                "instanceIdentifier": self.instance_identifier,
                "appUserSecretArn": self.app_user_secret_arn,
            }
        )

    # ---- the instance ------------------------------------------------------------------------

    def _instance(
        self,
        name: str,
        args: DatabaseArgs,
        key: aws.kms.Key,
        proxy_sg: aws.ec2.SecurityGroup,
    ) -> tuple[aws.rds.Instance, aws.ec2.SecurityGroup]:
        child = pulumi.ResourceOptions(parent=self)
        ident = args.instance_identifier
        db_sg = security_group(
            self,
            f"{name}-db",
            vpc_id=args.vpc_id,
            description=f"{ident}: PostgreSQL from the RDS Proxy only",
            tag_name=ident,
        )
        self._postgres_from(f"{name}-db-from-proxy", db_sg.id, proxy_sg.id, "the RDS Proxy")
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name_prefix=f"{ident}-",
            description=f"{ident}: private subnets",
            subnet_ids=list(args.subnet_ids),
            opts=child,
        )
        family = parameter_group_family(args.engine_version)
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            name_prefix=f"{ident}-{family}-",
            family=family,
            description=f"{ident}: TLS required",
            parameters=[
                {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"},
            ],
            # A new family (major upgrade) creates the new group before the old one goes.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        # RDS writes exported logs here and, if a group is missing, creates it without
        # retention; the instance depends on them so that they exist first (and this stack's
        # LogGroup create never meets a group RDS made: "already exists").
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-log-{log}",
                name=f"/aws/rds/instance/{ident}/{log}",
                retention_in_days=args.log_retention_days,
                opts=child,
            )
            for log in LOG_EXPORTS
        ]
        final_snapshot: pulumi.Input[str] | None = None
        if args.deletion_protection:
            suffix = random.RandomId(
                f"{name}-final-snapshot",
                byte_length=FINAL_SNAPSHOT_SUFFIX_BYTES,
                keepers=final_snapshot_keepers(ident, args.db_name, args.master_username, key.arn),
                opts=child,
            )
            final_snapshot = pulumi.Output.concat(ident, "-final-", suffix.hex)
        insights: dict[str, object] = {"performance_insights_enabled": args.performance_insights}
        if args.performance_insights:
            insights |= {
                "performance_insights_retention_period": args.performance_insights_retention_days,
                "performance_insights_kms_key_id": key.arn,
            }
        instance = aws.rds.Instance(
            name,
            identifier=ident,
            engine=ENGINE,
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=key.arn,
            db_name=args.db_name,
            username=args.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key.arn,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[db_sg.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            port=POSTGRES_PORT,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=not args.deletion_protection,
            final_snapshot_identifier=final_snapshot,
            auto_minor_version_upgrade=args.auto_minor_version_upgrade,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            tags={"Name": ident},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=log_groups),
            **insights,  # pyright: ignore[reportArgumentType]
        )
        return instance, db_sg

    # ---- the proxy ---------------------------------------------------------------------------

    def _proxy(
        self,
        name: str,
        args: DatabaseArgs,
        proxy_sg: aws.ec2.SecurityGroup,
        secret_arn: pulumi.Input[str],
        secret_kms_key_arn: pulumi.Input[str],
        app_secret_arn: pulumi.Input[str],
    ) -> aws.rds.Proxy:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-proxy",
            description=f"{args.proxy_name}: read the master and app-user secrets",
            assume_role_policy=assume_role_policy(
                self, "rds.amazonaws.com", source_account=self._account
            ),
            opts=child,
        )
        read_secret = policy_document(
            self,
            [
                {
                    "sid": "ReadProxySecrets",
                    "actions": [
                        "secretsmanager:GetSecretValue",
                        "secretsmanager:DescribeSecret",
                    ],
                    "resources": [secret_arn, app_secret_arn],
                },
                {
                    # Both secrets use this key (the app-user secret is created with it).
                    "sid": "DecryptProxySecretsThroughSecretsManager",
                    "actions": ["kms:Decrypt"],
                    "resources": [secret_kms_key_arn],
                    "conditions": [
                        {
                            "test": "StringEquals",
                            "variable": "kms:ViaService",
                            "values": [
                                self._region.apply(
                                    lambda r: SECRET_KMS_VIA_SERVICE.format(region=r)
                                )
                            ],
                        }
                    ],
                },
            ],
        )
        policy = aws.iam.RolePolicy(f"{name}-proxy", role=role.id, policy=read_secret, opts=child)
        return aws.rds.Proxy(
            f"{name}-proxy",
            name=args.proxy_name,
            engine_family="POSTGRESQL",
            require_tls=True,
            idle_client_timeout=args.proxy_idle_client_timeout_seconds,
            debug_logging=False,
            role_arn=role.arn,
            vpc_subnet_ids=list(args.subnet_ids),
            vpc_security_group_ids=[proxy_sg.id],
            auths=[
                {
                    "auth_scheme": "SECRETS",
                    "iam_auth": "REQUIRED",
                    "secret_arn": secret_arn,
                    "description": "RDS-managed master credentials",
                },
                {
                    "auth_scheme": "SECRETS",
                    "iam_auth": "REQUIRED",
                    "client_password_auth_type": CLIENT_PASSWORD_AUTH_TYPE,
                    "secret_arn": app_secret_arn,
                    "username": args.app_username,
                    "description": f"{args.app_username}: value set by jobstream db-bootstrap",
                },
            ],
            tags={"Name": args.proxy_name},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=[policy]),
        )

    # ---- for the stack: clients ------------------------------------------------------------

    def allow_client(self, name: str, security_group_id: pulumi.Input[str]) -> None:
        """Admit one client security group to the proxy on 5432."""
        self._postgres_from(
            f"{self._name}-proxy-from-{name}", self.proxy_security_group_id, security_group_id, name
        )

    def _postgres_from(
        self,
        logical: str,
        group_id: pulumi.Input[str],
        source_group_id: pulumi.Input[str],
        source: str,
    ) -> None:
        tcp_rule(
            self,
            logical,
            "ingress",
            group_id=group_id,
            port=POSTGRES_PORT,
            description=f"PostgreSQL from {source}",
            peer_group=source_group_id,
        )

    def grant_connect(self, name: str, role: aws.iam.Role, db_username: str) -> None:
        """Let ``role`` connect through this proxy (IAM auth) as ``db_username`` only."""
        arn = pulumi.Output.concat(
            "arn:",
            self._partition,
            ":rds-db:",
            self._region,
            ":",
            self._account,
            ":dbuser:",
            self.proxy_resource_id,
            "/",
            db_username,
        )
        document = policy_document(
            self,
            [{"sid": "ConnectThroughProxy", "actions": ["rds-db:connect"], "resources": [arn]}],
        )
        aws.iam.RolePolicy(
            f"{self._name}-connect-{name}",
            role=role.id,
            policy=document,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret] | None) -> str:
    arn = secrets[0].secret_arn if secrets else None
    if not arn:
        raise ValueError("RDS returned no master user secret for an instance that manages one")
    return arn
