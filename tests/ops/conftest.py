"""Fixtures for the operator-command tests: an in-process moto account (nothing leaves the
process; no address but 127.0.0.1 is ever contacted) and a seeder that builds a stack's live
resources and CloudWatch history the way the Pulumi program and the services would."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

from jobstream.contract import metrics as m
from jobstream.contract.names import Names
from jobstream.contract.phases import phase
from ops import cli

REGION = "us-east-1"  # the region of Pulumi.dev.yaml
ACCOUNT = "123456789012"  # moto's default account
STACK = "dev"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, fixed region, no IMDS, no profile or config file from the host."""
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def account(aws_env: None) -> Iterator[Seeder]:
    with mock_aws(config={"batch": {"use_docker": False}}):
        yield Seeder(STACK)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        """stdout must be exactly one JSON object."""
        document = json.loads(self.out)
        assert isinstance(document, dict), f"stdout is not one JSON object: {self.out[:200]}"
        return document

    def check(self, prefix: str) -> dict[str, Any]:
        """The one check of a ``--json`` preflight/triggers result whose name starts so."""
        doc = self.json()
        items = doc.get("checks") or doc.get("triggers") or []
        found = [c for c in items if c["name"].startswith(prefix)]
        assert len(found) == 1, (
            f"expected one check named {prefix!r}*, got {[c['name'] for c in found]}"
        )
        return found[0]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("COLUMNS", "220")  # rich wraps tables at the terminal width

    def invoke(*argv: str) -> Result:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@functools.cache
def _models() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


class Seeder:
    """Creates a stack's resources in moto under the names of ``infra.naming``."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.names = Names(stack)
        self.now = datetime.now(UTC)
        self._role: str | None = None
        self._clients: dict[str, Any] = {}
        self._session: boto3.session.Session | None = None

    def client(self, service: str) -> Any:
        """A client of moto's account (one per service), from one session per seeder built on
        the process's one loader of botocore's service models (like ``ops.aws_clients.Aws``):
        ``mock_aws`` starts every test with a new default session, which would parse each
        model's JSON again (~20 ms a service), and a session per client would register
        botocore's handlers again (~20 ms a session)."""
        if service not in self._clients:
            if self._session is None:
                core = botocore.session.get_session()
                core.register_component("data_loader", _models())
                self._session = boto3.session.Session(botocore_session=core, region_name=REGION)
            self._clients[service] = self._session.client(service)  # pyright: ignore[reportCallIssue, reportArgumentType]
        return self._clients[service]

    @property
    def role(self) -> str:
        if self._role is None:
            self._role = str(
                self.client("iam").create_role(RoleName="ops-test", AssumeRolePolicyDocument="{}")[
                    "Role"
                ]["Arn"]
            )
        return self._role

    # ---- routing ------------------------------------------------------------------------------

    def routing(self, number: int, **changes: Any) -> dict[str, Any]:
        p = phase(number)
        kafka = any(r.value == "kafka" for r in p.publish_targets) or number >= 3
        doc: dict[str, Any] = {
            "version": 1,
            "stack": self.stack,
            "phase": number,
            "publish_targets": [r.value for r in p.publish_targets],
            "consumer_modes": {r.value: mode.value for r, mode in p.consumer_modes.items()},
            "queue_url": None
            if number == 5
            else f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.names.job_queue}",
            "dlq_url": None,
            "topic": "jobstream.jobs" if kafka else None,
            "dead_letter_topic": "jobstream.jobs.dlq" if kafka else None,
            "bootstrap_brokers": "b-1.example:9098,b-2.example:9098" if kafka else None,
            "consumer_group": "jobstream-ml" if kafka else None,
            "kafka_auth": "iam" if kafka else None,
        }
        doc.update(changes)
        self.client("ssm").put_parameter(
            Name=self.names.routing_parameter, Value=json.dumps(doc), Type="String", Overwrite=True
        )
        return doc

    # ---- SQS ----------------------------------------------------------------------------------

    def queues(self, *, jobs: int = 0, dead: int = 0, failed: int = 0) -> None:
        """The job queue, its DLQ and the failed-jobs capture (as phases 1-4 have them)."""
        sqs = self.client("sqs")
        dlq = sqs.create_queue(QueueName=self.names.dead_letter_queue)["QueueUrl"]
        queue = sqs.create_queue(QueueName=self.names.job_queue)["QueueUrl"]
        parked = sqs.create_queue(QueueName=self.names.failed_jobs_queue)["QueueUrl"]
        for url, count in ((queue, jobs), (dlq, dead), (parked, failed)):
            for i in range(count):
                sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job": i}))

    # ---- RDS ----------------------------------------------------------------------------------

    def database(self, *, proxy: bool = True) -> None:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.10.{i}.0/24", AvailabilityZone=f"{REGION}{az}"
            )["Subnet"]["SubnetId"]
            for i, az in enumerate("ab")
        ]
        rds = self.client("rds")
        rds.create_db_instance(
            DBInstanceIdentifier=self.names.db_instance,
            DBInstanceClass="db.t4g.micro",
            Engine="postgres",
            MasterUsername="jobstream_admin",
            MasterUserPassword="not-a-real-password",
            AllocatedStorage=20,
        )
        if proxy:
            rds.create_db_proxy(
                DBProxyName=self.names.db_proxy,
                EngineFamily="POSTGRESQL",
                Auth=[
                    {
                        "AuthScheme": "SECRETS",
                        "SecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db",
                        "IAMAuth": "REQUIRED",
                    }
                ],
                RoleArn=self.role,
                VpcSubnetIds=subnets,
                RequireTLS=True,
            )

    # ---- MSK ----------------------------------------------------------------------------------

    def kafka(self, *, state: str | None = None) -> str:
        """An MSK cluster; moto leaves it CREATING unless ``state`` overrides moto's record."""
        arn = self.client("kafka").create_cluster_v2(
            ClusterName=self.names.kafka_cluster,
            Provisioned={
                "BrokerNodeGroupInfo": {
                    "InstanceType": "kafka.t3.small",
                    "ClientSubnets": ["subnet-a", "subnet-b"],
                },
                "KafkaVersion": "3.6.0",
                "NumberOfBrokerNodes": 2,
            },
        )["ClusterArn"]
        if state is not None:
            from moto.kafka.models import kafka_backends

            kafka_backends[ACCOUNT][REGION].clusters[arn].state = state
        return arn

    # ---- Batch --------------------------------------------------------------------------------

    def batch(self, jobs: dict[str, int] | None = None, *, state: str = "ENABLED") -> None:
        """The job queue and job definition, with ``jobs`` per state. moto (without Docker) marks a
        submitted job SUCCEEDED at once; other states are set on moto's job record."""
        batch = self.client("batch")
        env = batch.create_compute_environment(
            computeEnvironmentName=f"{self.names.batch_compute_environment_prefix}1",
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=self.role,
        )["computeEnvironmentArn"]
        batch.create_job_queue(
            jobQueueName=self.names.batch_job_queue,
            state=state,
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
        )
        batch.register_job_definition(
            jobDefinitionName=self.names.batch_job_definition,
            type="container",
            containerProperties={"image": "ml:1", "vcpus": 1, "memory": 2048},
        )
        if jobs:
            from moto.batch.models import batch_backends

            backend = batch_backends[ACCOUNT][REGION]
            for job_state, count in jobs.items():
                for i in range(count):
                    job_id = batch.submit_job(
                        jobName=f"{job_state.lower()}-{i}",
                        jobQueue=self.names.batch_job_queue,
                        jobDefinition=self.names.batch_job_definition,
                    )["jobId"]
                    if job_state != "SUCCEEDED":
                        backend._jobs[job_id].status = job_state  # pyright: ignore[reportPrivateUsage]

    # ---- Pipes --------------------------------------------------------------------------------

    def pipe(self, *, desired: str = "RUNNING", current: str | None = None) -> None:
        """The SQS -> Batch pipe. moto's runtime state is a simulation that moves on every read;
        it is pinned (manual progression) and, with ``current``, set on moto's record."""
        from moto.moto_api import state_manager

        state_manager.set_transition(
            model_name="pipes::pipe", transition={"progression": "manual", "times": 10**9}
        )
        self.client("pipes").create_pipe(
            Name=self.names.pipe,
            Source=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.names.job_queue}",
            Target=f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{self.names.batch_job_queue}",
            RoleArn=self.role,
            DesiredState=desired,
        )
        if current is not None:
            from moto.pipes.models import pipes_backends

            pipes_backends[ACCOUNT][REGION].pipes[self.names.pipe].status = current

    # ---- ECS ----------------------------------------------------------------------------------

    def consumer_service(self, desired: int = 1) -> None:
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName=self.names.ecs_cluster)
        ecs.register_task_definition(
            family=self.names.ecs_service,
            containerDefinitions=[{"name": "consumer", "image": "ml:1", "memory": 2048}],
        )
        ecs.create_service(
            cluster=self.names.ecs_cluster,
            serviceName=self.names.ecs_service,
            taskDefinition=self.names.ecs_service,
            desiredCount=desired,
        )

    # ---- CloudWatch ---------------------------------------------------------------------------

    def metric(
        self,
        namespace: str,
        name: str,
        dimensions: dict[str, str],
        values: Sequence[tuple[timedelta, float]],
    ) -> None:
        """Datapoints at ``now - age`` for each (age, value)."""
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                "Timestamp": self.now - age,
                "Value": value,
            }
            for age, value in values
        ]
        cw = self.client("cloudwatch")
        for start in range(0, len(data), 500):
            cw.put_metric_data(Namespace=namespace, MetricData=data[start : start + 500])

    def jobstream(self, name: str, values: Sequence[tuple[timedelta, float]], **dims: str) -> None:
        self.metric(m.NAMESPACE, name, {m.DIM_STACK: self.stack, **dims}, values)

    def sqs(self, queue: str, name: str, values: Sequence[tuple[timedelta, float]]) -> None:
        self.metric("AWS/SQS", name, {"QueueName": queue}, values)

    def lag(self, values: Sequence[tuple[timedelta, float]]) -> None:
        self.metric(
            "AWS/Kafka",
            "SumOffsetLag",
            {
                "Cluster Name": self.names.kafka_cluster,
                "Consumer Group": "jobstream-ml",
                "Topic": "jobstream.jobs",
            },
            values,
        )

    def jobs_per_day(self, counts: Sequence[float]) -> None:
        """``counts[-1]`` jobs sent yesterday (UTC), ``counts[-2]`` the day before, ..."""
        midday = self.now.replace(hour=12, minute=0, second=0, microsecond=0)
        values = [
            (self.now - (midday - timedelta(days=len(counts) - i)), c) for i, c in enumerate(counts)
        ]
        self.sqs(self.names.job_queue, "NumberOfMessagesSent", values)

    def alarm(self, suffix: str, *, firing: bool) -> str:
        name = f"{self.names.alarm_prefix}{suffix}"
        cw = self.client("cloudwatch")
        cw.put_metric_alarm(
            AlarmName=name,
            MetricName="ApproximateNumberOfMessagesVisible",
            Namespace="AWS/SQS",
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1000,
            ComparisonOperator="GreaterThanThreshold",
        )
        if firing:
            cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
        return name


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ---- the dead-letter places on moto's server and the local broker (parked, redrive, replay) ----


LOCAL_RECEIVE_WAIT_SECONDS = 0
"""An SQS receive of the operator commands against moto's server: moto answers every receive
from the whole queue, so an empty short poll means empty there, as an empty long poll does on
SQS (which samples its servers on a short poll). Saves the second an empty long poll waits, once
per scan (test_dead_letter_reads.py checks that the commands long-poll against SQS)."""
LOCAL_KAFKA_SETTLE_SECONDS = 0.1
"""The last poll of a topic read once every partition reached the high watermark read at the
start: on the local broker, nothing is appended during a read, and the records of the last
batch (above Tansu's too-low watermark) arrive in the fetch that brought its first record."""


@pytest.fixture
def local_read_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator commands' dead-letter reads, timed for local servers (see the constants)."""
    from ops import dead_letters

    monkeypatch.setattr(dead_letters, "RECEIVE_WAIT_SECONDS", LOCAL_RECEIVE_WAIT_SECONDS)
    monkeypatch.setattr(dead_letters, "KAFKA_SETTLE_SECONDS", LOCAL_KAFKA_SETTLE_SECONDS)


@pytest.fixture
def sqs_places(
    aws_env: None, moto_server: Any, monkeypatch: pytest.MonkeyPatch, local_read_timing: None
) -> Any:
    """Stack ``dev``'s queues on moto's server (reset for the test), phase 1; the operator
    commands reach it through ``AWS_ENDPOINT_URL`` (in this process, with ``local_read_timing``).
    """
    from tests.ops.recovery import RecoveryStack

    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    stack = RecoveryStack(moto_server)
    stack.create_queues()
    stack.set_phase(1)
    return stack


@pytest.fixture
def places(sqs_places: Any, kafka_broker: Any) -> Any:
    """``sqs_places`` with the Kafka topics of this test on the local broker, phase 3."""
    sqs_places.broker = kafka_broker
    sqs_places.create_topics()
    sqs_places.set_phase(3)
    return sqs_places
