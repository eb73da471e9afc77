"""Adoption of running resources: the ``adopt*`` keys, what an import needs of them, and the
stack's names with the adopted resources' own (for the commands that need no more config)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields

from infra.config.keys import (
    MISSING,
    NAMESPACE,
    InvalidValueError,
    Problem,
    Values,
    key,
    keys_of,
    optional,
    pattern,
    section,
)
from jobstream.contract.names import Names

_BATCH_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_SQS_URL = re.compile(
    # https://sqs.<region>.amazonaws.com/<account>/<name>, and the legacy endpoints
    # https://<region>.queue.amazonaws.com/... and https://queue.amazonaws.com/... (us-east-1).
    r"^https://(?:sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"|(?P<legacy>[a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?|queue\.amazonaws\.com)"
    r"/(?P<account>\d{12})/(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)$"
)
_BATCH_JOB_QUEUE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):batch:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"job-queue/(?P<name>[A-Za-z0-9_-]{1,128})$"
)
_BATCH_JOB_DEFINITION_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):batch:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"job-definition/(?P<name>[A-Za-z0-9_-]{1,128}):(?P<revision>[1-9]\d*)$"
)


def _sqs_url(raw: str) -> str:
    """an SQS queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/jobs"""
    value = raw.strip()
    if not _SQS_URL.match(value):
        raise InvalidValueError(
            "must be an SQS queue URL like https://sqs.<region>.amazonaws.com/<account>/<queue "
            "name> (what `aws sqs get-queue-url` prints)"
        )
    return value


def _batch_arn(kind: str, regex: re.Pattern[str]) -> Callable[[str], str]:
    example = "<name>:<revision>" if kind == "job-definition" else "<name>"

    def parse(raw: str) -> str:
        value = raw.strip()
        if not regex.match(value):
            raise InvalidValueError(
                f"must be the ARN of an AWS Batch {kind.replace('-', ' ')}: "
                f"arn:aws:batch:<region>:<account>:{kind}/{example}"
            )
        return value

    parse.__doc__ = f"an AWS Batch {kind} ARN (arn:aws:batch:<region>:<account>:{kind}/{example})"
    return parse


@section("Adoption of running resources")
@dataclass(frozen=True, kw_only=True)
class AdoptionConfig:
    """Physical ids of running resources the stack imports instead of creating (Pulumi's
    ``import`` resource option): each as the provider's import id for its type."""

    job_queue_url: str | None = key(
        "adoptJobQueueUrl",
        optional(_sqs_url),
        None,
        "Import this running SQS job queue (its URL) instead of creating one; `jobstream adopt` writes it and the settings that match it.",
    )
    dead_letter_queue_url: str | None = key(
        "adoptDeadLetterQueueUrl",
        optional(_sqs_url),
        None,
        "Import this running SQS queue (its URL) as the dead-letter queue.",
    )
    batch_compute_environment: str | None = key(
        "adoptBatchComputeEnvironment",
        optional(
            pattern(
                _BATCH_NAME,
                "must be an AWS Batch compute environment name (up to 128 letters, digits, - and _)",
            )
        ),
        None,
        "Import this running Batch compute environment (its name).",
    )
    batch_job_queue_arn: str | None = key(
        "adoptBatchJobQueueArn",
        optional(_batch_arn("job-queue", _BATCH_JOB_QUEUE_ARN)),
        None,
        "Import this running Batch job queue (its ARN).",
    )
    batch_job_definition_arn: str | None = key(
        "adoptBatchJobDefinitionArn",
        optional(_batch_arn("job-definition", _BATCH_JOB_DEFINITION_ARN)),
        None,
        "Import this Batch job definition (its ARN with the revision); the first `pulumi up` registers the stack's revision of it.",
    )

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def names(self, stack: str) -> Names:
        """The stack's names, the adopted resources' own names in place of derived ones."""
        return Names(stack).adopting(
            job_queue=_queue_name(self.job_queue_url),
            dead_letter_queue=_queue_name(self.dead_letter_queue_url),
            batch_compute_environment=self.batch_compute_environment,
            batch_job_queue=_arn_name(self.batch_job_queue_arn, _BATCH_JOB_QUEUE_ARN),
            batch_job_definition=_arn_name(
                self.batch_job_definition_arn, _BATCH_JOB_DEFINITION_ARN
            ),
        )


def _queue_name(url: str | None) -> str | None:
    match = _SQS_URL.match(url) if url else None
    return match["name"] if match else None


def _arn_name(arn: str | None, regex: re.Pattern[str]) -> str | None:
    match = regex.match(arn) if arn else None
    return match["name"] if match else None


def stack_names(stack: str, raw: Mapping[str, str]) -> Names:
    """The names of a stack from its flat config, reading only the adoption keys (for the
    commands that need names but not the whole config); a bad adoption value is skipped here,
    the full ``parse`` reports it."""
    values: dict[str, str | None] = {}
    for k in keys_of(AdoptionConfig):
        given = raw.get(f"{NAMESPACE}:{k.name}")
        assert k.attribute is not None
        try:
            values[k.attribute] = k.parse(given) if given else None
        except InvalidValueError:
            values[k.attribute] = None
    return AdoptionConfig(**values).names(stack)


def adoption_problems(v: Values, region: str) -> Iterator[Problem]:
    """What an import needs of the adoption keys: ids in the stack's region and account, the
    queues standard and distinct."""
    accounts: dict[str, str] = {}
    located: list[tuple[str, str | None, str]] = []
    for name in ("adoptJobQueueUrl", "adoptDeadLetterQueueUrl"):
        url = v[name]
        if url in (None, MISSING):
            continue
        match = _SQS_URL.match(url)
        assert match is not None  # the key's parser checked the pattern
        url_region = match["region"] or match["legacy"] or "us-east-1"
        located.append((name, url_region, match["account"]))
        if match["name"].endswith(".fifo"):
            yield Problem(
                name,
                url,
                "is a FIFO queue; the stack's queues are standard queues and fifo_queue "
                "cannot change without a new queue (adopt a standard queue)",
            )
    for name, regex in (
        ("adoptBatchJobQueueArn", _BATCH_JOB_QUEUE_ARN),
        ("adoptBatchJobDefinitionArn", _BATCH_JOB_DEFINITION_ARN),
    ):
        arn = v[name]
        if arn in (None, MISSING):
            continue
        match = regex.match(arn)
        assert match is not None
        located.append((name, match["region"], match["account"]))
    for name, id_region, account in located:
        if id_region != region:
            yield Problem(
                name,
                v[name],
                f"names a resource in {id_region}; a stack imports resources of its own "
                f"region only ({region})",
                related={"(aws:region)": region},
            )
        first = next(iter(accounts.items()), None)
        if first is not None and first[1] != account:
            yield Problem(
                name,
                v[name],
                f"is in account {account}, {first[0]} in account {first[1]}: one stack "
                "manages one account",
                related={first[0]: v[first[0]]},
            )
        accounts.setdefault(name, account)
    jobs, dead = v["adoptJobQueueUrl"], v["adoptDeadLetterQueueUrl"]
    if jobs and dead and jobs == dead:
        yield Problem(
            "adoptDeadLetterQueueUrl",
            dead,
            "is the job queue itself: the dead-letter queue must be another queue",
            related={"adoptJobQueueUrl": jobs},
        )
