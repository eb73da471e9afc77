"""Every IAM policy document the program produces passes parliament with no finding above LOW.

Documents come from the offline plan (``infra.plan_views.iter_policy_documents``) for every stack and
phase: role trust policies, role / managed policies, inline policies and resource policies
(queue, topic, key policies). parliament runs through its Python API (its CLI ``--file`` fails
without a TTY, as in CI). A finding parliament gets wrong is allowed by ``_allowed`` below, as
narrowly as it can be, with the reason next to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import parliament
import pytest

from infra.plan import PlanSet
from infra.plan_views import iter_policy_documents
from jobstream.contract.phases import PHASES

STACKS = ("dev", "prod")
SEVERITIES = ("MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
HIGHEST_ALLOWED = "LOW"

_NO_RESOURCE = "Statement contains neither Resource nor NotResource"
_JOB_DEFINITION_REVISION = re.compile(r"^arn:[^:]+:batch:[^:]*:\d*:job-definition/[^:/]+:(\d+|\*)$")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _submit_job_resources(document: Mapping[str, Any]) -> list[str]:
    return [
        resource
        for statement in _as_list(document.get("Statement", []))
        if "batch:SubmitJob" in _as_list(statement.get("Action", []))
        for resource in _as_list(statement.get("Resource", []))
    ]


def _allowed(key: str, document: Mapping[str, Any], finding: Any) -> bool:
    # A role's trust policy (assumeRolePolicy) is a resource policy on the role itself: IAM does
    # not allow a Resource element in it, while parliament checks every document as an identity
    # policy and calls the missing Resource MALFORMED.
    if (
        key == "assumeRolePolicy"
        and finding.issue == "MALFORMED"
        and finding.detail == _NO_RESOURCE
    ):
        return True
    # batch:SubmitJob: the AWS Batch guide ("Resource: Restrict to a job queue", "Accounting for
    # job definition revisions") asks for a job-queue ARN plus a job-definition ARN *with* a
    # revision (name:* or name:N). parliament's bundled action table also requires a `job/*`
    # resource, and its ARN matcher does not match the ':revision' suffix to job-definition/*.
    # Only those two entries are forgiven; a missing job queue is still a finding.
    if finding.issue == "RESOURCE_MISMATCH" and isinstance(finding.detail, list):
        revision = any(_JOB_DEFINITION_REVISION.match(r) for r in _submit_job_resources(document))
        remaining = [
            d
            for d in finding.detail
            if not (
                d.get("action") == "batch:SubmitJob"
                and (
                    d.get("required_format") == "arn:*:batch:*:*:job/*"
                    or (d.get("required_format") == "arn:*:batch:*:*:job-definition/*" and revision)
                )
            )
        ]
        return not remaining
    return False


def lint(key: str, document: Mapping[str, Any]) -> list[str]:
    """parliament's findings above LOW that ``_allowed`` does not forgive, as readable lines."""
    policy = parliament.analyze_policy_string(json.dumps(document))
    out: list[str] = []
    for finding in policy.findings:
        parliament.enhance_finding(finding)
        if SEVERITIES.index(finding.severity) <= SEVERITIES.index(HIGHEST_ALLOWED):
            continue
        if _allowed(key, document, finding):
            continue
        out.append(f"{finding.severity} {finding.issue}: {finding.title}: {finding.detail}")
    return out


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_policy_document_passes_parliament(plans: PlanSet, stack: str, phase: int) -> None:
    plan = plans.get(stack, phase)
    problems: list[str] = []
    documents = 0
    for resource, key, document in iter_policy_documents(plan):
        documents += 1
        problems += [f"{resource.urn} [{key}] {line}" for line in lint(key, document)]
    assert problems == [], f"{stack} phase {phase}:\n" + "\n".join(problems)
    assert documents > 0, "the plan has IAM documents to lint"


def _statement(**fields: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **fields}]}


def test_lint_reports_a_resource_that_does_not_fit_the_action() -> None:
    (line,) = lint("policy", _statement(Action="s3:GetObject", Resource="arn:aws:s3:::bucket"))
    assert line.startswith("MEDIUM RESOURCE_MISMATCH")


def test_lint_reports_a_missing_resource_outside_trust_policies() -> None:
    document = _statement(Action="sts:AssumeRole", Principal={"Service": "ecs-tasks.amazonaws.com"})
    assert lint("assumeRolePolicy", document) == []
    (line,) = lint("policy", document)
    assert "MALFORMED" in line


QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/jobs"


def test_submit_job_on_a_queue_and_a_job_definition_revision_passes() -> None:
    definition = "arn:aws:batch:us-east-1:123456789012:job-definition/ml:*"
    assert lint("policy", _statement(Action="batch:SubmitJob", Resource=[QUEUE, definition])) == []


def test_submit_job_without_a_job_definition_is_still_reported() -> None:
    (line,) = lint("policy", _statement(Action="batch:SubmitJob", Resource=[QUEUE]))
    assert "job-definition" in line
