"""The AWS Batch section of the stack config, and the Fargate sizes that both the Batch jobs and
the Kafka consumer service must keep to (see ``sections`` for the layout)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from infra.config.keys import (
    REQUIRED,
    InvalidValueError,
    Problem,
    Values,
    choice,
    integer,
    key,
    number,
    problem,
    section,
    string_list,
)
from jobstream.contract.choices import ComputeType

BATCH_JOB_TIMEOUT_RANGE = (60, 14 * 24 * 3600)

# Fargate task sizes: vCPU -> allowed memory (MiB), from the AWS Batch/ECS Fargate table.
FARGATE_MEMORY_MIB: Mapping[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4097, 1024)),
    1.0: tuple(range(2048, 8193, 1024)),
    2.0: tuple(range(4096, 16385, 1024)),
    4.0: tuple(range(8192, 30721, 1024)),
    8.0: tuple(range(16384, 61441, 4096)),
    16.0: tuple(range(32768, 122881, 8192)),
}

# A container image reference, as the distribution (Docker) reference grammar defines it:
# [domain[:port]/]path[:tag][@digest], the path made of lowercase components separated by '/'.
_IMAGE_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d+)?)"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:(?P<domain>{_IMAGE_DOMAIN})/)?(?P<path>{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
IMAGE_NAME_MAX = 255
"""The reference grammar's limit on the repository name (domain and path)."""


def _image(raw: str) -> str:
    allowed = (
        "must be a container image reference registry/repository:tag or "
        "registry/repository@sha256:<digest> (lowercase repository path, an explicit tag or "
        "digest: an untagged reference means :latest, which moves under a running stack)"
    )
    value = str(raw).strip()
    match = _IMAGE.match(value)
    if not value or match is None:
        raise InvalidValueError(allowed)
    if not (match.group("tag") or match.group("digest")):
        raise InvalidValueError(allowed)
    name = value.split("@")[0].rsplit(":", 1)[0] if match.group("tag") else value.split("@")[0]
    if len(name) > IMAGE_NAME_MAX:
        raise InvalidValueError(f"repository name longer than {IMAGE_NAME_MAX} characters")
    return value


_image.__doc__ = "container image registry/repository:tag or @digest"


def fargate_size(v: Values, cpu_key: str, memory_key: str, vcpu: float) -> Iterator[Problem]:
    """Fargate accepts only the CPU/memory pairs of its table (ECS RegisterTaskDefinition
    memory; AWS Batch uses the same table for Fargate jobs)."""
    sizes: tuple[int, ...] | None = FARGATE_MEMORY_MIB.get(vcpu)
    if sizes is None:
        yield problem(
            v, cpu_key, "must be a Fargate size: " + ", ".join(f"{c:g}" for c in FARGATE_MEMORY_MIB)
        )
        return
    if v[memory_key] in sizes:
        return
    first, last = sizes[0], sizes[-1]
    step = sizes[1] - first if len(sizes) > 1 else 0
    yield problem(
        v,
        memory_key,
        f"must be a Fargate memory size for {vcpu:g} vCPU: {first}..{last} in steps of {step} "
        "(ECS: 'No Fargate configuration exists for given values' otherwise)",
        cpu_key,
    )


@section("AWS Batch")
@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    image: str = key(
        "image", _image, REQUIRED, "ML container image (used by Batch and the Kafka consumer)."
    )
    compute_type: ComputeType = key(
        "computeType",
        choice(ComputeType),
        ComputeType.FARGATE,
        "Batch compute: FARGATE, FARGATE_SPOT or EC2 SPOT.",
    )
    max_vcpus: int = key(
        "batchMaxVcpus", integer(1, 4096), 16, "Compute environment ceiling (vCPU)."
    )
    spot_instance_types: tuple[str, ...] = key(
        "spotInstanceTypes",
        string_list(re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)?$"), "EC2 instance types"),
        ("m6i.large", "m5.large"),
        "EC2 instance types for SPOT compute.",
    )
    job_vcpu: float = key("jobVcpu", number(0.25, 16), 1.0, "vCPU per job.")
    job_memory_mib: int = key(
        "jobMemoryMib",
        integer(512, 122_880),
        2048,
        "Memory per job (MiB); a valid Fargate size for jobVcpu.",
    )
    job_timeout_seconds: int = key(
        "jobTimeoutSeconds", integer(*BATCH_JOB_TIMEOUT_RANGE), 1800, "Attempt timeout of one job."
    )
    job_attempts: int = key(
        "jobAttempts",
        integer(1, 10),
        3,
        "Attempts per job (retries on infrastructure failures only).",
    )
    expected_jobs_per_day: int = key(
        "expectedJobsPerDay", integer(0, 100_000_000), 2000, "Expected load, for the cost estimate."
    )
    expected_job_seconds: int = key(
        "expectedJobSeconds",
        integer(1, 86_400),
        120,
        "Expected run time of one job, for the cost estimate.",
    )

    @staticmethod
    def rules(v: Values) -> Iterator[Problem]:
        if v["computeType"] in (ComputeType.FARGATE, ComputeType.FARGATE_SPOT):
            yield from fargate_size(v, "jobVcpu", "jobMemoryMib", v["jobVcpu"])
