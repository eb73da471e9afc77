"""The phase table is consistent with DESIGN.md's rules."""

from __future__ import annotations

from itertools import pairwise

import pytest

from jobstream.contract.phases import (
    PHASES,
    ConsumerMode,
    GroupState,
    Phase,
    ResourceGroup,
    Route,
    UnknownPhaseError,
    adjacent_changes,
    all_phases,
    phase,
)


def test_there_are_five_phases() -> None:
    assert [p.number for p in all_phases()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("number", [0, 6, -1])
def test_unknown_phase_numbers_are_rejected(number: int) -> None:
    with pytest.raises(UnknownPhaseError, match="phases are 1, 2, 3, 4, 5"):
        phase(number)


@pytest.mark.parametrize("p", all_phases(), ids=lambda p: f"phase{p.number}")
def test_each_phase_has_exactly_one_primary_consumer(p: Phase) -> None:
    primaries = [r for r, m in p.consumer_modes.items() if m is ConsumerMode.PRIMARY]
    assert len(primaries) == 1, f"phase {p.number}: primary consumers {primaries}"


@pytest.mark.parametrize("p", all_phases(), ids=lambda p: f"phase{p.number}")
def test_producers_only_publish_to_routes_whose_resources_exist(p: Phase) -> None:
    if Route.SQS in p.publish_targets:
        assert p.has(ResourceGroup.JOB_QUEUE)
    if Route.KAFKA in p.publish_targets:
        assert p.has(ResourceGroup.KAFKA)


@pytest.mark.parametrize("p", all_phases(), ids=lambda p: f"phase{p.number}")
def test_the_primary_consumer_reads_a_route_that_is_published_to(p: Phase) -> None:
    assert p.primary_consumer in p.publish_targets


@pytest.mark.parametrize("p", all_phases(), ids=lambda p: f"phase{p.number}")
def test_the_kafka_consumer_service_mode_matches_the_routing(p: Phase) -> None:
    state = p.state(ResourceGroup.CONSUMER_SERVICE)
    mode = p.consumer_modes[Route.KAFKA]
    assert (state.value if state else ConsumerMode.OFF.value) == mode.value


@pytest.mark.parametrize("p", all_phases(), ids=lambda p: f"phase{p.number}")
def test_the_sqs_path_applies_jobs_exactly_while_the_pipe_runs(p: Phase) -> None:
    running = p.state(ResourceGroup.SQS_TRIGGER) is GroupState.RUNNING
    applies = p.consumer_modes[Route.SQS] in (ConsumerMode.PRIMARY, ConsumerMode.DRAIN)
    assert running == applies, f"phase {p.number}: pipe running={running}, SQS applies={applies}"


@pytest.mark.parametrize("p", all_phases(), ids=lambda p: f"phase-{p.number}")
def test_batch_is_enabled_whenever_the_pipe_runs(p: Phase) -> None:
    """A running pipe submits to the Batch job queue: a disabled queue would strand the jobs."""
    if p.state(ResourceGroup.SQS_TRIGGER) is GroupState.RUNNING:
        assert p.state(ResourceGroup.BATCH) is GroupState.ENABLED, f"phase {p.number}"


def test_network_database_routing_and_monitoring_exist_in_every_phase() -> None:
    for p in all_phases():
        for group in (
            ResourceGroup.NETWORK,
            ResourceGroup.DATABASE,
            ResourceGroup.ROUTING,
            ResourceGroup.MONITORING,
        ):
            assert p.has(group), f"phase {p.number} lacks {group}"


def test_cutover_drains_the_sqs_path_instead_of_stopping_it() -> None:
    """DESIGN.md, phase 4: the queue takes no new writes and drains; the pipe keeps running and
    Batch stays enabled, so every job that reached SQS is applied by the SQS path."""
    cutover = phase(4)
    assert cutover.state(ResourceGroup.JOB_QUEUE) is GroupState.DRAINING
    assert cutover.state(ResourceGroup.SQS_TRIGGER) is GroupState.RUNNING
    assert cutover.state(ResourceGroup.BATCH) is GroupState.ENABLED
    assert cutover.publish_targets == (Route.KAFKA,)
    assert cutover.consumer_modes[Route.SQS] is ConsumerMode.DRAIN
    assert cutover.consumer_modes[Route.KAFKA] is ConsumerMode.PRIMARY


def test_cleanup_removes_sqs_pipe_and_batch() -> None:
    cleanup = phase(5)
    for group in (ResourceGroup.JOB_QUEUE, ResourceGroup.SQS_TRIGGER, ResourceGroup.BATCH):
        assert not cleanup.has(group)


def test_rollback_never_needs_a_group_the_higher_phase_removed() -> None:
    """Going down one phase must bring back the lower phase's groups from what was kept."""
    for higher, lower in ((b, a) for a, b in pairwise(PHASES) if b != 5):
        kept = set(phase(higher).groups)
        missing = set(phase(lower).groups) - kept
        assert not missing, f"rollback {higher}->{lower} needs re-creating {missing}"


def test_supported_changes_are_one_step_up_or_down_except_out_of_cleanup() -> None:
    changes = adjacent_changes()
    assert (1, 2) in changes and (4, 5) in changes and (4, 3) in changes and (2, 1) in changes
    assert (5, 4) not in changes
    assert all(abs(a - b) == 1 for a, b in changes)
