"""The guardrails accept every resource the program creates, for every stack and phase.

The resources come from the offline plan (``infra.plan.run_plan``): the same camelCase inputs,
protect flags and dependencies the engine hands a policy pack during ``pulumi preview``.
"""

from __future__ import annotations

import pytest

from infra.plan import PlanSet
from jobstream.contract.phases import PHASES
from tests.policy.support import check_plan

STACKS = ("dev", "prod")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_of_the_program_passes_every_policy(
    plans: PlanSet, stack: str, phase: int
) -> None:
    plan = plans.get(stack, phase)
    violations, runs = check_plan(plan)
    assert violations == [], f"{stack} phase {phase}:\n" + "\n".join(map(str, violations))
    assert runs >= len(plan.resources) > 0  # the policies really ran over the plan


def test_prod_without_protection_is_rejected_for_each_stateful_resource(plans: PlanSet) -> None:
    plan = plans.get("prod", phase=1, overrides={"jobstream:protectStatefulResources": "false"})
    violations, _ = check_plan(plan)
    flagged = {v.urn for v in violations if v.policy == "stateful-protected-in-prod"}
    queues = {r.urn for r in plan.of_type("aws:sqs/queue:Queue")}
    assert queues, "phase 1 has the SQS queues"
    assert queues <= flagged, violations
