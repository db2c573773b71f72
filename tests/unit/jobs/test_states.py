from __future__ import annotations

import pytest

from shared.jobs.states import JobStatus, can_transition, is_terminal, sources_of

QUEUED = JobStatus.QUEUED
RUNNING = JobStatus.RUNNING
SUCCEEDED = JobStatus.SUCCEEDED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED

# The contract of SPEC section 4, written out by hand: (source, target, allowed).
TRUTH_TABLE: list[tuple[JobStatus, JobStatus, bool]] = [
    (QUEUED, QUEUED, False),
    (QUEUED, RUNNING, True),
    (QUEUED, SUCCEEDED, False),
    (QUEUED, FAILED, False),
    (QUEUED, CANCELLED, True),
    (RUNNING, QUEUED, True),
    (RUNNING, RUNNING, False),
    (RUNNING, SUCCEEDED, True),
    (RUNNING, FAILED, True),
    (RUNNING, CANCELLED, True),
    (SUCCEEDED, QUEUED, False),
    (SUCCEEDED, RUNNING, False),
    (SUCCEEDED, SUCCEEDED, False),
    (SUCCEEDED, FAILED, False),
    (SUCCEEDED, CANCELLED, False),
    (FAILED, QUEUED, False),
    (FAILED, RUNNING, False),
    (FAILED, SUCCEEDED, False),
    (FAILED, FAILED, False),
    (FAILED, CANCELLED, False),
    (CANCELLED, QUEUED, False),
    (CANCELLED, RUNNING, False),
    (CANCELLED, SUCCEEDED, False),
    (CANCELLED, FAILED, False),
    (CANCELLED, CANCELLED, False),
]


def test_truth_table_covers_every_pair() -> None:
    pairs = {(source, target) for source, target, _ in TRUTH_TABLE}
    assert pairs == {(source, target) for source in JobStatus for target in JobStatus}
    assert len(TRUTH_TABLE) == 25


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    TRUTH_TABLE,
    ids=[f"{source}->{target}" for source, target, _ in TRUTH_TABLE],
)
def test_can_transition(source: JobStatus, target: JobStatus, allowed: bool) -> None:
    assert can_transition(source, target) is allowed


@pytest.mark.parametrize("terminal", [SUCCEEDED, FAILED, CANCELLED])
def test_terminal_states_are_absorbing(terminal: JobStatus) -> None:
    assert not any(can_transition(terminal, target) for target in JobStatus)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (QUEUED, {RUNNING}),
        (RUNNING, {QUEUED}),
        (SUCCEEDED, {RUNNING}),
        (FAILED, {RUNNING}),
        (CANCELLED, {QUEUED, RUNNING}),
    ],
)
def test_sources_of(target: JobStatus, sources: set[JobStatus]) -> None:
    assert sources_of(target) == frozenset(sources)


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (QUEUED, False),
        (RUNNING, False),
        (SUCCEEDED, True),
        (FAILED, True),
        (CANCELLED, True),
    ],
)
def test_is_terminal(status: JobStatus, terminal: bool) -> None:
    assert is_terminal(status) is terminal
