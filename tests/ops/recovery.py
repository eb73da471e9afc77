"""A stack's dead-letter places on moto's server and the local Kafka broker, for the tests of
``jobstream parked``, ``redrive`` and ``replay``: the queues the stack creates (the job queue
with its redrive policy to the DLQ, the failed-jobs capture), the routing document of a phase,
the Kafka topics, and ways to park a job in each place the way the platform does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jobstream.contract import env
from jobstream.contract.names import Names
from jobstream.contract.phases import phase
from jobstream.contract.routing import routing_for_phase
from jobstream.messaging import aws
from jobstream.messaging.envelope import Envelope
from jobstream.messaging.kafka import ensure_topics
from jobstream.messaging.publishers import JOB_ID_ATTRIBUTE
from rehearsal.servers import MotoServer, TansuBroker

STACK = "dev"
REGION = "us-east-1"  # Pulumi.dev.yaml
ACCOUNT = "123456789012"
MAX_RECEIVE_COUNT = 2


def envelope(job_id: str, n: int = 4, routes: Sequence[str] = ("sqs",)) -> Envelope:
    return Envelope.new("double", {"n": n}, job_id=job_id).with_routes(list(routes))


@dataclass
class RecoveryStack:
    """The dead-letter places of stack ``dev`` on the local servers."""

    moto: MotoServer
    broker: TansuBroker | None = None
    names: Names = field(default_factory=lambda: Names(STACK))
    topic: str = field(default_factory=lambda: f"jobs-{uuid.uuid4().hex[:8]}")
    urls: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return aws.client(service, region=REGION, endpoint_url=self.moto.url, max_attempts=2)

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None, "this test has no Kafka broker"
        return self.broker.bootstrap

    # ---- what the stack creates ---------------------------------------------------------------

    def create_queues(self) -> None:
        """The job queue (redrive to the DLQ after MAX_RECEIVE_COUNT receives; no visibility
        timeout, so a test can receive a message again at once), the DLQ and the capture."""
        sqs = self.client("sqs")
        dlq = sqs.create_queue(QueueName=self.names.dead_letter_queue)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue = sqs.create_queue(
            QueueName=self.names.job_queue,
            Attributes={
                "VisibilityTimeout": "0",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                ),
            },
        )["QueueUrl"]
        captured = sqs.create_queue(QueueName=self.names.failed_jobs_queue)["QueueUrl"]
        self.urls = {"queue": queue, "dlq": dlq, "failed-jobs": captured}

    def create_topics(self) -> None:
        ensure_topics({"bootstrap.servers": self.bootstrap}, [self.topic], partitions=1)
        ensure_topics({"bootstrap.servers": self.bootstrap}, [self.dead_letter_topic], partitions=2)

    def set_phase(self, number: int, *, bootstrap: str | None = None) -> None:
        kafka = number >= 2
        routing = routing_for_phase(
            phase(number),
            stack=STACK,
            queue_url=self.urls.get("queue") if number < 5 else None,
            topic=self.topic if kafka else None,
            dead_letter_topic=self.dead_letter_topic if kafka else None,
            bootstrap_brokers=(bootstrap or self.bootstrap) if kafka else None,
            consumer_group=f"ml-{self.topic}" if kafka else None,
            kafka_auth="none",
        )
        self.client("ssm").put_parameter(
            Name=self.names.routing_parameter,
            Value=routing.to_json(),
            Type="String",
            Overwrite=True,
        )

    # ---- parking, as the platform does it -------------------------------------------------------

    def publish(self, body: str, job_id: str | None = None) -> None:
        attributes = (
            {JOB_ID_ATTRIBUTE: {"DataType": "String", "StringValue": job_id}} if job_id else {}
        )
        self.client("sqs").send_message(
            QueueUrl=self.urls["queue"], MessageBody=body, MessageAttributes=attributes
        )

    def park_in_dlq(self, body: str, job_id: str | None = None) -> None:
        """What happens when the pipe cannot submit a message (a disabled Batch job queue, a
        denied SubmitJob): each receive leaves it in the queue, and after MAX_RECEIVE_COUNT
        receives SQS moves it to the DLQ (moto really does)."""
        self.publish(body, job_id)
        sqs = self.client("sqs")
        for _ in range(MAX_RECEIVE_COUNT + 1):
            sqs.receive_message(QueueUrl=self.urls["queue"], MaxNumberOfMessages=10)
        assert self.depth("queue") == 0, "the message did not reach the DLQ"

    def capture_failed_job(self, event: Mapping[str, Any]) -> None:
        """What the failed-jobs rule does: the whole event becomes one message of the capture."""
        self.client("sqs").send_message(
            QueueUrl=self.urls["failed-jobs"], MessageBody=json.dumps(event)
        )

    def dead_letter(
        self, value: bytes, key: str | None, reason: str, *, partition: int | None = None
    ) -> None:
        """What the Kafka consumer does with a message it cannot process."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        producer.produce(
            self.dead_letter_topic,
            partition=-1 if partition is None else partition,  # -1: the partitioner decides
            key=key.encode() if key else None,
            value=value,
            headers={
                "jobstream.error": reason.encode(),
                "jobstream.source": f"{self.topic}/0/{uuid.uuid4().int % 1000}".encode(),
            },
        )
        assert producer.flush(10) == 0

    # ---- reading back ---------------------------------------------------------------------------

    def depth(self, place: str) -> int:
        """Visible + in flight + delayed messages of ``queue``, ``dlq`` or ``failed-jobs``."""
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.urls[place],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def visible(self, place: str) -> int:
        return int(
            self.client("sqs").get_queue_attributes(
                QueueUrl=self.urls[place], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )

    def drain(self, place: str) -> list[dict[str, Any]]:
        """Receive and delete every message of a queue (what its consumer would get); short
        polls, which on moto's server see the whole queue (an empty one means empty)."""
        sqs = self.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.urls[place],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                sqs.delete_message(
                    QueueUrl=self.urls[place], ReceiptHandle=message["ReceiptHandle"]
                )
            found += messages

    def topic_records(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        """(key, value) of every record of a topic, read from the beginning without a group."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            found: list[tuple[bytes | None, bytes | None]] = []
            while (message := consumer.poll(2.0)) is not None:
                if message.error() is None:
                    key, value = message.key(), message.value()
                    found.append(
                        (
                            key.encode() if isinstance(key, str) else key,
                            value.encode() if isinstance(value, str) else value,
                        )
                    )
            return found
        finally:
            consumer.close()


def failed_job_event(
    body: str | None,
    *,
    exit_code: int | None,
    message_id: str = "m-1",
    job_id: str | None = None,
    stopped: datetime | None = None,
    attempts: int = 1,
    status_reason: str = "Essential container in task exited",
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ``Batch Job State Change`` event of a job that reached FAILED, as the failed-jobs rule
    delivers it to the capture queue (the whole event as the message body).

    AWS publishes no FAILED sample. This one is built from the one sample AWS gives (a RUNNABLE
    event, AWS Batch user guide "Job state change events": "The detail section resembles the
    JobDetail object that's returned from a DescribeJobs API operation") and the JobDetail /
    AttemptDetail / AttemptContainerDetail shapes of the DescribeJobs API. That the detail's
    ``container.environment`` carries the environment the pipe passed as container overrides
    (``JOBSTREAM_JOB_MESSAGE``, ``JOBSTREAM_SQS_MESSAGE_ID``) follows from "detail = DescribeJobs
    output", which shows overrides merged into the environment; it was not seen on AWS
    (unverified). ``body=None`` builds a record without the message body.
    """
    job_id = job_id or str(uuid.uuid4())
    stopped = stopped or datetime.now(UTC)
    started = stopped - timedelta(seconds=20)
    millis = int(stopped.timestamp() * 1000)
    job_arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{job_id}"
    names = Names(STACK)
    variables = dict(environment or {env.CONSUMER: env.CONSUMER_SQS, env.STACK: STACK})
    if body is not None:
        variables[env.JOB_MESSAGE] = body
        variables[env.SQS_MESSAGE_ID] = message_id
    container: dict[str, Any] = {
        "taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{names.prefix}/{uuid.uuid4().hex}",
        "logStreamName": f"{names.batch_job_definition}/default/{uuid.uuid4().hex}",
        "networkInterfaces": [],
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    attempt = {
        "container": container,
        "startedAt": int(started.timestamp() * 1000),
        "stoppedAt": millis,
        "statusReason": status_reason,
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": ACCOUNT,
        "time": stopped.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [job_arn],
        "detail": {
            "jobArn": job_arn,
            "jobName": f"{names.prefix}-job",
            "jobId": job_id,
            "jobQueue": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{names.batch_job_queue}",
            "status": "FAILED",
            "statusReason": status_reason,
            "attempts": [attempt] * attempts,
            "createdAt": int((started - timedelta(seconds=5)).timestamp() * 1000),
            "retryStrategy": {"attempts": 3, "evaluateOnExit": []},
            "startedAt": int(started.timestamp() * 1000),
            "stoppedAt": millis,
            "dependsOn": [],
            "jobDefinition": (
                f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{names.batch_job_definition}:1"
            ),
            "parameters": {},
            "container": {
                "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/jobstream-ml:1.0.0",
                "command": [],
                "volumes": [],
                "environment": [{"name": k, "value": v} for k, v in variables.items()],
                "mountPoints": [],
                "ulimits": [],
                **({"exitCode": exit_code} if exit_code is not None else {}),
                "logStreamName": container["logStreamName"],
                "networkInterfaces": [],
                "resourceRequirements": [
                    {"value": "1", "type": "VCPU"},
                    {"value": "2048", "type": "MEMORY"},
                ],
                "secrets": [],
            },
            "tags": {},
            "propagateTags": False,
            "platformCapabilities": ["FARGATE"],
        },
    }
