"""Job metrics derived from transitions: what each one adds, and how the hash reads back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.db.models import Job
from shared.metrics import BUCKETS, INF, JobFigures, bucket_label, increments

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(status: str, attempts: int = 0, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "kind": "primes",
        "status": status,
        "attempts": attempts,
        "created_at": T0,
        "run_at": T0,
        "started_at": None,
        "finished_at": None,
    }
    values.update(fields)
    return Job(**values)


def test_a_new_job_counts_as_submitted() -> None:
    assert increments(job("queued")) == [("submitted|primes", 1)]


def test_a_retry_going_back_to_the_queue_is_not_a_submission() -> None:
    assert increments(job("queued", attempts=1)) == []


def test_starting_records_the_wait_since_the_job_was_due() -> None:
    due = T0 + timedelta(seconds=10)  # delayed: waiting before run_at is not queue wait
    started = due + timedelta(seconds=0.3)
    assert increments(job("running", 1, run_at=due, started_at=started)) == [
        ("wait|primes|0.5", 1),
        ("wait|primes|sum", pytest.approx(0.3)),
    ]


def test_an_end_counts_by_status_and_records_the_last_attempts_run_time() -> None:
    started = T0 + timedelta(seconds=5)
    ended = started + timedelta(seconds=42)
    assert increments(job("failed", 2, started_at=started, finished_at=ended)) == [
        ("finished|primes|failed", 1),
        ("duration|primes|60", 1),
        ("duration|primes|sum", 42.0),
    ]


def test_a_job_cancelled_before_it_started_has_no_duration() -> None:
    assert increments(job("cancelled", finished_at=T0)) == [("finished|primes|cancelled", 1)]


def test_a_job_cancelled_while_waiting_for_its_retry_adds_no_run_time() -> None:
    # Its earlier attempt's start is still recorded; the wait since is not run time.
    ended = job("cancelled", 1, started_at=T0, finished_at=T0 + timedelta(minutes=10))
    assert increments(ended, ran=False) == [("finished|primes|cancelled", 1)]


def test_bucket_labels() -> None:
    assert bucket_label(0) == "0.005"
    assert bucket_label(BUCKETS[3]) == f"{BUCKETS[3]:g}"  # `le` includes its bound
    assert bucket_label(BUCKETS[-1] + 1) == INF


def test_the_hash_reads_back_as_cumulative_histograms() -> None:
    raw = {
        b"submitted|echo": b"3",
        b"finished|echo|succeeded": b"2",
        b"finished|echo|failed": b"1",
        b"duration|echo|0.01": b"2",
        b"duration|echo|+Inf": b"1",
        b"duration|echo|sum": b"7200.02",
        b"wait|echo|0.005": b"3",
        b"wait|echo|sum": b"0.004",
        b"unknown|field": b"1",
    }
    figures = JobFigures.parse(raw)
    assert figures.submitted == {"echo": 3}
    assert figures.finished == {("echo", "succeeded"): 2, ("echo", "failed"): 1}
    duration = dict(figures.duration["echo"].cumulative())
    assert duration["0.005"] == 0
    assert duration["0.01"] == 2
    assert duration["3600"] == 2
    assert duration[INF] == 3
    assert figures.duration["echo"].sum == pytest.approx(7200.02)
    assert dict(figures.wait["echo"].cumulative())[INF] == 3
