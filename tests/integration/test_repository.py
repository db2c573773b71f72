"""The repository's compare-and-set transitions on real Postgres, under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.db.engine import SessionFactory, single_statements
from shared.db.models import Job
from shared.db.repository import NOT_SINGLE, JobRepository
from shared.errors import StaleAttempt
from shared.jobs.registry import load_registry
from shared.jobs.schemas import JobSubmission
from shared.jobs.service import JobService, Principal
from shared.jobs.states import JobStatus


async def make_job(
    sessions: SessionFactory, owner: str, *, delay: float = 0, kind: str = "sleep"
) -> Job:
    params = {"seconds": 1} if kind == "sleep" else {"message": "x"}
    async with sessions.begin() as session:
        service = JobService(JobRepository(session), load_registry())
        return await service.submit(
            Principal(owner), JobSubmission(kind=kind, params=params, delay_seconds=delay or None)
        )


async def claim(sessions: SessionFactory, job_id: uuid.UUID) -> Job | None:
    try:
        async with sessions.begin() as session:
            now = datetime.now(UTC)
            return await JobRepository(session).claim(job_id, now, now + timedelta(seconds=30))
    except StaleAttempt:
        return None


async def test_of_two_racing_claimers_exactly_one_wins(
    sessions: SessionFactory, subject: str
) -> None:
    for _ in range(20):
        job = await make_job(sessions, subject)
        results = await asyncio.gather(*(claim(sessions, job.id) for _ in range(4)))
        winners = [result for result in results if result is not None]
        assert len(winners) == 1
        assert winners[0].attempts == 1 and winners[0].status == JobStatus.RUNNING


async def test_stale_attempt_cannot_overwrite_a_newer_one(
    sessions: SessionFactory, subject: str
) -> None:
    job = await make_job(sessions, subject)
    first = await claim(sessions, job.id)
    assert first is not None
    async with sessions.begin() as session:
        await JobRepository(session).requeue(
            job.id, 1, run_at=datetime.now(UTC), error={"type": "error", "message": "boom"}
        )
    second = await claim(sessions, job.id)
    assert second is not None and second.attempts == 2
    now = datetime.now(UTC)
    with pytest.raises(StaleAttempt):
        async with sessions.begin() as session:
            await JobRepository(session).finish(
                job.id, 1, JobStatus.SUCCEEDED, now, result={"late": True}
            )
    async with sessions.begin() as session:
        repository = JobRepository(session)
        assert await repository.save_progress(job.id, 1, {"current": 1}) is None
        finished = await repository.finish(job.id, 2, JobStatus.SUCCEEDED, now, result={"slept": 1})
    assert finished.result == {"slept": 1} and finished.attempts == 2


async def test_every_status_and_progress_write_bumps_seq(
    sessions: SessionFactory, subject: str
) -> None:
    job = await make_job(sessions, subject)
    assert job.seq == 1
    claimed = await claim(sessions, job.id)
    assert claimed is not None and claimed.seq == 2
    async with sessions.begin() as session:
        repository = JobRepository(session)
        quiet = await repository.save_progress(job.id, 1, None)
        loud = await repository.save_progress(job.id, 1, {"current": 1})
        done = await repository.finish(job.id, 1, JobStatus.SUCCEEDED, datetime.now(UTC))
    assert quiet is not None and quiet.seq == 2
    assert loud is not None and loud.seq == 3
    assert done.seq == 4


async def test_a_job_whose_cancel_was_requested_is_not_requeued(
    sessions: SessionFactory, subject: str
) -> None:
    job = await make_job(sessions, subject)
    await claim(sessions, job.id)
    async with sessions.begin() as session:
        repository = JobRepository(session)
        await repository.request_cancel(job.id)
        retry_at = datetime.now(UTC) + timedelta(minutes=5)
        ended = await repository.requeue(
            job.id, 1, run_at=retry_at, error={"type": "error", "message": "x"}
        )
    assert ended.status == JobStatus.CANCELLED and ended.finished_at is not None
    # It ended then, not at the retry time it never reached.
    assert ended.finished_at <= datetime.now(UTC)
    assert await claim(sessions, job.id) is None


async def test_terminal_states_are_absorbing(sessions: SessionFactory, subject: str) -> None:
    job = await make_job(sessions, subject)
    await claim(sessions, job.id)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        await JobRepository(session).finish(
            job.id, 1, JobStatus.FAILED, now, error={"type": "error", "message": "x"}
        )
    for attempt in (1, 2):
        with pytest.raises(StaleAttempt):
            async with sessions.begin() as session:
                await JobRepository(session).finish(job.id, attempt, JobStatus.SUCCEEDED, now)
    with pytest.raises(StaleAttempt):
        async with sessions.begin() as session:
            await JobRepository(session).cancel_queued(job.id, now)
    assert await claim(sessions, job.id) is None


async def test_cancel_running_sets_the_flag_the_attempt_reads(
    sessions: SessionFactory, subject: str
) -> None:
    job = await make_job(sessions, subject)
    await claim(sessions, job.id)
    async with sessions.begin() as session:
        pulse = await JobRepository(session).save_progress(job.id, 1, None)
        assert pulse is not None and pulse.cancel_requested is False
        flagged = await JobRepository(session).request_cancel(job.id)
    assert flagged is not None and flagged.cancel_requested
    async with sessions.begin() as session:
        pulse = await JobRepository(session).save_progress(
            job.id, 1, {"current": 2, "total": None, "percent": None, "message": None}
        )
    assert pulse is not None and pulse.cancel_requested is True


async def test_pages_stay_correct_while_jobs_arrive(sessions: SessionFactory, subject: str) -> None:
    originals = [await make_job(sessions, subject, kind="echo") for _ in range(25)]
    expected = [
        job.id for job in sorted(originals, key=lambda job: (job.created_at, job.id), reverse=True)
    ]
    seen: list[uuid.UUID] = []
    cursor: str | None = None
    while True:
        async with sessions() as session:
            service = JobService(JobRepository(session), load_registry())
            page, cursor = await service.page(
                Principal(subject), status=None, kind=None, limit=7, cursor=cursor
            )
        seen.extend(job.id for job in page)
        # New jobs keep arriving between pages; they are newer, so they never shift the pages.
        await asyncio.gather(*(make_job(sessions, subject, kind="echo") for _ in range(3)))
        if cursor is None:
            break
    assert seen == expected


async def _attempt(sessions: SessionFactory, job_id: uuid.UUID) -> list[tuple[object, ...]]:
    """Claim, report progress twice (once with a lease), fail a stale end, end: what each
    step returned."""
    now = datetime.now(UTC)
    seen: list[tuple[object, ...]] = []

    def row(job: Job) -> tuple[object, ...]:
        return (job.status, job.seq, job.attempts, job.progress, job.result, job.error)

    async with sessions.begin() as session:
        claimed = await JobRepository(session).claim(job_id, now, now + timedelta(seconds=30))
        seen.append((*row(claimed), claimed.lease_expires_at is not None))
    for progress, lease in (({"current": 1}, None), (None, now + timedelta(seconds=60))):
        async with sessions.begin() as session:
            pulse = await JobRepository(session).save_progress(job_id, 1, progress, lease)
            seen.append((pulse,))
    async with sessions.begin() as session:
        with pytest.raises(StaleAttempt):
            await JobRepository(session).finish(job_id, 2, JobStatus.SUCCEEDED, now)
    async with sessions.begin() as session:
        ended = await JobRepository(session).finish(
            job_id, 1, JobStatus.SUCCEEDED, now, result={"ok": True}, progress={"current": 2}
        )
        seen.append((*row(ended), ended.lease_expires_at is None))
    async with sessions.begin() as session:
        stored = await JobRepository(session).get(job_id)
        assert stored is not None
        seen.append(row(stored))
    return seen


async def test_single_statements_take_the_plain_sql_path_with_the_same_outcomes(
    sessions: SessionFactory, subject: str
) -> None:
    """Autocommit sessions send claims, progress and ends straight to asyncpg; transactions go
    through the ORM. Both must leave and return exactly the same."""
    single = single_statements(sessions)
    async with single.begin() as session:
        assert await JobRepository(session)._plain("SELECT 1 AS one") == {"one": 1}
    async with sessions.begin() as session:
        assert await JobRepository(session)._plain("SELECT 1 AS one") is NOT_SINGLE
    by_orm = await _attempt(sessions, (await make_job(sessions, subject)).id)
    by_sql = await _attempt(single, (await make_job(sessions, subject)).id)
    assert by_sql == by_orm
    assert by_orm[-1] == (JobStatus.SUCCEEDED, 4, 1, {"current": 2}, {"ok": True}, None)
