"""Every physical name derived from the stack name has its service's rule (issue 12)."""

from __future__ import annotations

import inspect

import pytest

from jobstream.contract.names import (
    NAME_RULES,
    Names,
    derived_names,
    longest_stack_name,
    name_problems,
)


def test_every_derived_name_has_a_rule() -> None:
    derived = {
        name
        for name, member in inspect.getmembers(Names)
        if isinstance(member, property) or (inspect.isfunction(member) and name == "log_group")
    }
    derived -= {"prefix"}  # only ever part of another name (and of tags)
    derived -= {"batch_compute_environment"}  # an adopted environment's own name, never derived
    assert derived == set(NAME_RULES), derived ^ set(NAME_RULES)


def test_the_shipped_stacks_derive_valid_names() -> None:
    assert name_problems("dev") == [] and name_problems("prod") == []


def test_the_longest_stack_name_is_the_tightest_limit() -> None:
    longest = longest_stack_name()
    assert name_problems("s" * longest) == []
    problems = name_problems("s" * (longest + 1))
    assert problems and all("more than" in why for _, _, why in problems)


def test_a_compute_environment_prefix_keeps_room_for_the_providers_suffix() -> None:
    rule = NAME_RULES["batch_compute_environment_prefix"]
    value = derived_names(Names("x"))["batch_compute_environment_prefix"]
    assert rule.problem(value + "a" * (128 - 26 - len(value))) is None
    assert rule.problem(value + "a" * (128 - 26 - len(value) + 1)) is not None


def test_rds_identifier_rules_are_enforced() -> None:
    rule = NAME_RULES["db_instance"]
    assert rule.problem("jobstream-dev-db") is None
    for bad in ("1db", "db--x", "db-", "db_x", "Db", "jobstream-Prod-db"):
        assert rule.problem(bad) is not None, bad


def test_an_adopted_name_replaces_the_derived_one_and_others_stay_derived() -> None:
    names = Names("dev").adopting(job_queue="legacy-jobs", batch_job_queue=None)
    assert names.job_queue == "legacy-jobs"
    assert names.batch_job_queue == Names("dev").batch_job_queue
    assert names.dead_letter_queue == "jobstream-dev-jobs-dlq"


def test_only_adoptable_names_can_be_adopted() -> None:
    with pytest.raises(ValueError, match="routing_parameter"):
        Names("dev", adopted=(("routing_parameter", "/x"),))


def test_a_stack_name_with_an_uppercase_letter_derives_refused_rds_names() -> None:
    """RDS stores identifiers in lowercase and the provider refuses uppercase at preview
    (terraform-provider-aws validIdentifier: "only lowercase alphanumeric characters and
    hyphens allowed")."""
    refused = {kind for kind, _value, _why in name_problems("Prod")}
    assert refused == {"db_instance", "db_proxy"}
