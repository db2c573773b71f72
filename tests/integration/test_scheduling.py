"""The dispatcher's queries on real Postgres: due jobs, unclaimed jobs, expired leases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from shared.db.engine import SessionFactory
from shared.db.repository import JobRepository
from shared.db.scheduling import Scheduling
from shared.jobs.dispatcher import Dispatcher
from shared.jobs.states import JobStatus
from tests.integration.test_repository import claim, make_job


async def test_one_dispatcher_at_a_time_hands_each_due_job_out_once(
    sessions: SessionFactory, subject: str
) -> None:
    # Due in an hour, so only this test's "later" clock finds them, not a running dispatcher.
    ids = {(await make_job(sessions, subject, delay=3600)).id for _ in range(10)}
    later = datetime.now(UTC) + timedelta(seconds=3601)

    async def take() -> set[uuid.UUID]:
        async with sessions.begin() as session:
            scheduling = Scheduling(session)
            if not await scheduling.lock():
                return set()
            await asyncio.sleep(0.05)  # hold the lock while the others try
            return {job.id for job in await scheduling.take_due(later, 1000)}

    taken = [batch & ids for batch in await asyncio.gather(*(take() for _ in range(5)))]
    assert set().union(*taken) == ids
    assert sum(len(batch) for batch in taken) == len(ids)


async def test_unclaimed_jobs_are_handed_over_again_with_growing_waits(
    sessions: SessionFactory, subject: str
) -> None:
    job = await make_job(sessions, subject)  # handed over at submission (dispatches = 1)
    start = job.dispatched_at
    assert start is not None and job.dispatches == 1

    async def unclaimed(at: datetime) -> set[uuid.UUID]:
        async with sessions.begin() as session:
            jobs = await Scheduling(session).take_unclaimed(at, claim_timeout=30, limit=10_000)
        return {found.id for found in jobs}

    assert job.id not in await unclaimed(start + timedelta(seconds=29))
    assert job.id in await unclaimed(start + timedelta(seconds=31))  # now dispatches = 2
    second = start + timedelta(seconds=31)
    assert job.id not in await unclaimed(second + timedelta(seconds=59))  # waits 2 x 30 s
    assert job.id in await unclaimed(second + timedelta(seconds=61))
    assert await claim(sessions, job.id) is not None
    assert job.id not in await unclaimed(second + timedelta(days=1))


async def test_expired_lease_requeues_then_fails_with_worker_lost(
    sessions: SessionFactory, subject: str
) -> None:
    job = await make_job(sessions, subject)
    rescued = []
    for attempt in (1, 2, 3):
        claimed = await claim(sessions, job.id)
        assert claimed is not None and claimed.attempts == attempt
        assert claimed.lease_expires_at is not None
        async with sessions.begin() as session:
            expired = await Scheduling(session).expired_leases(
                claimed.lease_expires_at + timedelta(seconds=1), 10_000
            )
            assert (job.id, attempt) in expired
            rescued.append(await Dispatcher._rescue(JobRepository(session), job.id, attempt))
    assert [found.status for found in rescued] == ["queued", "queued", "failed"]
    assert all(found.error and found.error["type"] == "worker_lost" for found in rescued)
    assert rescued[-1].attempts == 3 and rescued[-1].status == JobStatus.FAILED


async def test_a_renewed_lease_is_not_expired(sessions: SessionFactory, subject: str) -> None:
    job = await make_job(sessions, subject)
    claimed = await claim(sessions, job.id)
    assert claimed is not None and claimed.lease_expires_at is not None
    renewed_until = claimed.lease_expires_at + timedelta(seconds=60)
    async with sessions.begin() as session:
        await JobRepository(session).save_progress(job.id, 1, None, renewed_until)
        expired = await Scheduling(session).expired_leases(
            claimed.lease_expires_at + timedelta(seconds=1), 10_000
        )
    assert (job.id, 1) not in expired
