"""Pruning on real Postgres and Redis: only what is due goes, one process at a time.

Every test prunes a database of its own: the suite's shared one has other tests' jobs in it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text

from shared.db.engine import SessionFactory, create_engine, create_session_factory
from shared.db.models import IdempotencyKey, Job, WebhookDelivery
from shared.db.retention import Retention
from shared.db.scheduling import Scheduling
from shared.jobs.registry import Registry
from shared.jobs.retention import Pruner
from shared.jobs.states import JobStatus, Lane
from shared.keys import PRUNE_LOCK_ID, event_stream
from shared.settings import Settings
from tests.unit.jobs.test_retention import kind

pytestmark = pytest.mark.timeout(60)

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


REGISTRY = Registry(
    [kind("plain"), kind("short", result_ttl=3600), kind("long", result_ttl=30 * 24 * 3600)]
)


@pytest.fixture
def private(settings: Settings, own_database: str) -> Settings:
    return settings.model_copy(update={"database_url": own_database})


@pytest.fixture
async def sessions(private: Settings) -> AsyncIterator[SessionFactory]:
    """This module's jobs live in a database of their own (this overrides the suite's)."""
    engine = create_engine(private, pool_size=4)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture
def pruner(sessions: SessionFactory, private: Settings, redis: Redis) -> Pruner:
    """JOBQ_RESULT_TTL at its default, 7 days."""
    assert private.result_ttl == 7 * 24 * 3600
    return Pruner(sessions, REGISTRY, private, redis)


async def add_job(
    sessions: SessionFactory,
    now: datetime,
    *,
    kind: str = "plain",
    status: JobStatus = JobStatus.SUCCEEDED,
    finished_ago: timedelta | None = None,
    created_ago: timedelta | None = None,
    delivery: str | None = None,
) -> uuid.UUID:
    """A job as the runner leaves it; `delivery` adds a webhook delivery in that state."""
    job_id = uuid.uuid4()
    created = now - (created_ago or finished_ago or timedelta())
    async with sessions.begin() as session:
        session.add(
            Job(
                id=job_id,
                owner="retention",
                kind=kind,
                lane=Lane.QUICK.value,
                status=status.value,
                priority="normal",
                params={"value": 0},
                max_attempts=1,
                timeout_seconds=10.0,
                created_at=created,
                run_at=created,
                finished_at=None if finished_ago is None else now - finished_ago,
            )
        )
        if delivery is not None:
            session.add(
                WebhookDelivery(
                    id=uuid.uuid4(),
                    job_id=job_id,
                    url="https://example.com/hook",
                    state=delivery,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    return job_id


async def add_key(sessions: SessionFactory, job_id: uuid.UUID, created_at: datetime) -> str:
    key = uuid.uuid4().hex
    async with sessions.begin() as session:
        session.add(
            IdempotencyKey(
                owner="retention",
                key=key,
                request_hash="0" * 64,
                job_id=job_id,
                created_at=created_at,
            )
        )
    return key


async def jobs_left(sessions: SessionFactory, *ids: uuid.UUID) -> set[uuid.UUID]:
    async with sessions() as session:
        return set((await session.scalars(select(Job.id).where(Job.id.in_(ids)))).all())


async def keys_left(sessions: SessionFactory) -> set[str]:
    async with sessions() as session:
        return set((await session.scalars(select(IdempotencyKey.key))).all())


async def deliveries_of(sessions: SessionFactory, job_id: uuid.UUID) -> int:
    async with sessions() as session:
        query = select(WebhookDelivery.id).where(WebhookDelivery.job_id == job_id)
        return len((await session.scalars(query)).all())


async def test_a_finished_job_past_its_ttl_goes_with_what_hangs_off_it(
    sessions: SessionFactory, redis: Redis, pruner: Pruner
) -> None:
    now = datetime.now(UTC)
    old = await add_job(sessions, now, finished_ago=8 * DAY, delivery="delivered")
    recent = await add_job(sessions, now, finished_ago=6 * DAY, delivery="failed")
    old_key = await add_key(sessions, old, now - 8 * DAY)
    for job_id in (old, recent):
        await redis.xadd(event_stream(job_id), {"e": "{}"})

    report = await pruner.prune_once(now)

    assert await jobs_left(sessions, old, recent) == {recent}
    assert await deliveries_of(sessions, old) == 0
    assert await deliveries_of(sessions, recent) == 1
    assert old_key not in await keys_left(sessions)
    assert await redis.exists(event_stream(old)) == 0
    assert await redis.exists(event_stream(recent)) == 1
    assert (report.jobs, report.deliveries, report.idempotency_keys, report.streams) == (
        1,
        1,
        1,
        1,
    )
    assert not report.locked_out and not report.remaining
    await redis.delete(event_stream(recent))


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
async def test_a_job_that_is_not_terminal_stays_however_old(
    sessions: SessionFactory, pruner: Pruner, status: JobStatus
) -> None:
    now = datetime.now(UTC)
    waiting = await add_job(sessions, now, status=status, created_ago=90 * DAY)
    # A finished_at on a job that is not terminal is not its end: the status decides.
    odd = await add_job(sessions, now, status=status, finished_ago=90 * DAY)

    report = await pruner.prune_once(now)

    assert await jobs_left(sessions, waiting, odd) == {waiting, odd}
    assert report.jobs == 0


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
async def test_every_terminal_status_is_pruned(
    sessions: SessionFactory, pruner: Pruner, status: JobStatus
) -> None:
    now = datetime.now(UTC)
    job_id = await add_job(sessions, now, status=status, finished_ago=8 * DAY)
    assert (await pruner.prune_once(now)).jobs == 1
    assert await jobs_left(sessions, job_id) == set()


async def test_a_kind_s_own_result_ttl_is_honoured(
    sessions: SessionFactory, pruner: Pruner
) -> None:
    now = datetime.now(UTC)
    gone = {
        await add_job(sessions, now, kind="short", finished_ago=2 * HOUR),
        await add_job(sessions, now, kind="long", finished_ago=31 * DAY),
        await add_job(sessions, now, kind="plain", finished_ago=8 * DAY),
        # A kind no longer registered falls back to JOBQ_RESULT_TTL.
        await add_job(sessions, now, kind="retired", finished_ago=8 * DAY),
    }
    kept = {
        await add_job(sessions, now, kind="short", finished_ago=HOUR / 2),
        await add_job(sessions, now, kind="long", finished_ago=8 * DAY),
        await add_job(sessions, now, kind="plain", finished_ago=6 * DAY),
        await add_job(sessions, now, kind="retired", finished_ago=6 * DAY),
    }

    report = await pruner.prune_once(now)

    assert await jobs_left(sessions, *gone, *kept) == kept
    assert report.jobs == len(gone)


async def test_idempotency_keys_go_after_24_hours_and_not_before(
    sessions: SessionFactory, pruner: Pruner
) -> None:
    now = datetime.now(UTC)
    live = await add_job(sessions, now, status=JobStatus.RUNNING)
    pruned = await add_job(sessions, now, kind="short", finished_ago=2 * HOUR)
    expired = await add_key(sessions, live, now - 25 * HOUR)
    fresh = await add_key(sessions, live, now - 23 * HOUR)
    # Kept its 24 hours though its job is gone: a replay gets a conflict, not a second job.
    of_pruned = await add_key(sessions, pruned, now - 2 * HOUR)

    report = await pruner.prune_once(now)

    assert await jobs_left(sessions, live, pruned) == {live}
    left = await keys_left(sessions)
    assert expired not in left
    assert {fresh, of_pruned} <= left
    assert report.idempotency_keys == 1


async def test_a_job_whose_webhook_is_still_pending_stays_until_it_is_sent(
    sessions: SessionFactory, pruner: Pruner
) -> None:
    now = datetime.now(UTC)
    job_id = await add_job(sessions, now, finished_ago=8 * DAY, delivery="pending")

    assert (await pruner.prune_once(now)).jobs == 0
    assert await jobs_left(sessions, job_id) == {job_id}

    async with sessions.begin() as session:
        delivery = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        )
        assert delivery is not None
        delivery.state = "delivered"
    assert (await pruner.prune_once(now)).jobs == 1
    assert await jobs_left(sessions, job_id) == set()


async def test_nothing_is_pruned_while_another_process_holds_the_lock(
    sessions: SessionFactory, pruner: Pruner
) -> None:
    now = datetime.now(UTC)
    job_id = await add_job(sessions, now, finished_ago=8 * DAY)

    async with sessions.begin() as session:
        assert await Retention(session).lock()
        report = await pruner.prune_once(now)
        assert report.locked_out and report.rounds == 0 and report.jobs == 0
        assert await jobs_left(sessions, job_id) == {job_id}

    assert (await pruner.prune_once(now)).jobs == 1  # the lock went with that transaction


async def prune_lock_held(sessions: SessionFactory) -> bool:
    """Whether some session of this database holds the prune lock (without taking it)."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = :high AND objid = :low AND objsubid = 1"
    )
    async with sessions() as session:
        held = await session.scalar(
            query, {"high": PRUNE_LOCK_ID >> 32, "low": PRUNE_LOCK_ID & 0xFFFFFFFF}
        )
    return bool(held)


async def test_the_dispatcher_s_lock_does_not_stop_pruning(
    sessions: SessionFactory, pruner: Pruner
) -> None:
    now = datetime.now(UTC)
    job_id = await add_job(sessions, now, finished_ago=8 * DAY)

    async with sessions.begin() as session:
        assert await Scheduling(session).lock()
        report = await pruner.prune_once(now)

    assert report.jobs == 1 and not report.locked_out
    assert await jobs_left(sessions, job_id) == set()


async def test_of_two_pruners_at_once_one_prunes_and_the_other_finds_the_lock_taken(
    sessions: SessionFactory, pruner: Pruner, private: Settings, redis: Redis
) -> None:
    now = datetime.now(UTC)
    ids = {await add_job(sessions, now, finished_ago=8 * DAY, delivery="delivered")}
    ids |= {await add_job(sessions, now, finished_ago=8 * DAY) for _ in range(4)}
    other = Pruner(sessions, REGISTRY, private, redis)

    # Holding one delivery row keeps the first pruner's pass, and so its lock, open.
    async with sessions.begin() as blocker:
        await blocker.execute(select(WebhookDelivery.id).with_for_update())
        first = asyncio.create_task(pruner.prune_once(now))
        for _ in range(200):
            if await prune_lock_held(sessions):
                break
            await asyncio.sleep(0.02)
        assert await prune_lock_held(sessions)

        second = await other.prune_once(now)
        assert second.locked_out and (second.jobs, second.rounds) == (0, 0)
        assert not first.done()

    report = await first
    assert report.jobs == len(ids) and not report.locked_out
    assert await jobs_left(sessions, *ids) == set()


async def test_more_due_jobs_than_a_batch_go_in_one_pass(
    sessions: SessionFactory, private: Settings, redis: Redis
) -> None:
    now = datetime.now(UTC)
    ids = {await add_job(sessions, now, finished_ago=8 * DAY) for _ in range(10)}
    kept = await add_job(sessions, now, finished_ago=6 * DAY)
    pruner = Pruner(sessions, REGISTRY, private.model_copy(update={"prune_batch": 3}), redis)

    report = await pruner.prune_once(now)

    assert report.jobs == 10 and report.rounds == 4 and not report.remaining
    assert await jobs_left(sessions, *ids, kept) == {kept}


async def test_a_pass_stops_after_its_rounds_and_the_next_one_goes_on(
    sessions: SessionFactory, private: Settings, redis: Redis
) -> None:
    now = datetime.now(UTC)
    # Oldest first in the list; a pass takes the oldest first.
    ids = [await add_job(sessions, now, finished_ago=8 * DAY + (7 - n) * HOUR) for n in range(7)]
    pruner = Pruner(sessions, REGISTRY, private.model_copy(update={"prune_batch": 2}), redis)
    pruner.max_rounds = 2

    first = await pruner.prune_once(now)
    assert (first.jobs, first.rounds, first.remaining) == (4, 2, True)
    assert await jobs_left(sessions, *ids) == set(ids[4:])

    second = await pruner.prune_once(now)
    assert (second.jobs, second.remaining) == (3, False)
    assert await jobs_left(sessions, *ids) == set()


async def test_redis_being_down_does_not_stop_a_pass(
    sessions: SessionFactory, private: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    job_id = await add_job(sessions, now, finished_ago=8 * DAY)
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        with caplog.at_level(logging.WARNING, logger="jobq.retention"):
            report = await Pruner(sessions, REGISTRY, private, down).prune_once(now)
    finally:
        await down.aclose()

    assert (report.jobs, report.streams) == (1, 0)
    assert await jobs_left(sessions, job_id) == set()
    assert "could not delete 1 event streams" in caplog.text


async def test_run_forever_prunes_until_cancelled(sessions: SessionFactory, pruner: Pruner) -> None:
    job_id = await add_job(sessions, datetime.now(UTC), finished_ago=8 * DAY)
    task = asyncio.create_task(pruner.run_forever())
    try:
        for _ in range(100):
            if not await jobs_left(sessions, job_id):
                break
            await asyncio.sleep(0.05)
        assert await jobs_left(sessions, job_id) == set()
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_forever_logs_a_failed_pass_and_goes_on(
    private: Settings, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    missing = private.database_url.rsplit("/", 1)[0] + "/jobq_missing"
    nowhere = private.model_copy(update={"database_url": missing, "prune_interval": 1.0})
    engine = create_engine(nowhere, pool_size=1)
    pruner = Pruner(create_session_factory(engine), REGISTRY, nowhere, redis)
    with caplog.at_level(logging.WARNING, logger="jobq.retention"):
        task = asyncio.create_task(pruner.run_forever())
        try:
            for _ in range(100):
                if caplog.text.count("pruning failed") >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await engine.dispose()
    assert caplog.text.count("pruning failed") >= 2
