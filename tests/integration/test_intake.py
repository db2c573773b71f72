"""Group commit of submissions (shared/jobs/intake.py) on real Postgres and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select, text

from shared.db.engine import SessionFactory
from shared.db.idempotency import IdempotencyKeys
from shared.db.models import IdempotencyKey, Job
from shared.errors import InvalidSubmission, TooManyRequests, Unavailable
from shared.events import EventBus
from shared.jobs.intake import Intake
from shared.jobs.registry import load_registry
from shared.jobs.schemas import JobSubmission
from shared.jobs.service import Principal, prepare_job, request_hash
from shared.settings import Settings
from tests.conftest import auth

REGISTRY = load_registry()
SLEEP: Mapping[str, object] = {"kind": "sleep", "params": {"seconds": 1}}


class HandOvers:
    """Records what the intake hands over, as the dispatcher would receive it."""

    def __init__(self) -> None:
        self.batches: list[list[uuid.UUID]] = []

    async def __call__(self, jobs: Sequence[Job]) -> None:
        self.batches.append([job.id for job in jobs])

    async def handed(self, count: int) -> list[uuid.UUID]:
        """Every job handed over so far, sorted, once there are `count` (or after a second)."""
        for _ in range(50):
            if sum(len(batch) for batch in self.batches) == count:
                break
            await asyncio.sleep(0.02)
        return sorted(job for batch in self.batches for job in batch)


@pytest.fixture
async def events(settings: Settings) -> AsyncIterator[EventBus]:
    redis = Redis.from_url(settings.redis_url)
    yield EventBus(redis, settings.event_retention)
    await redis.aclose()


@pytest.fixture
async def intake(
    sessions: SessionFactory, events: EventBus
) -> AsyncIterator[tuple[Intake, HandOvers]]:
    handed = HandOvers()
    intake = Intake(sessions, events, handed, max_active=3)
    intake.start()
    yield intake, handed
    await intake.stop()


def prepared(owner: str, body: Mapping[str, object] = SLEEP) -> Job:
    return prepare_job(REGISTRY, Principal(owner), JobSubmission.model_validate(body))


def hash_of(body: Mapping[str, object]) -> str:
    return request_hash(JobSubmission.model_validate(body))


async def stored(sessions: SessionFactory, owner: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).where(Job.owner == owner)) or 0)


async def test_concurrent_submissions_share_transactions(
    app: FastAPI, client: httpx.AsyncClient, token: str, subject: str, sessions: SessionFactory
) -> None:
    intake: Intake = app.state.services.intake
    commits, jobs = intake.commits, intake.committed_jobs
    responses = await asyncio.gather(
        *(
            client.post("/jobs", json=SLEEP, headers={**auth(token), "Idempotency-Key": str(n)})
            for n in range(150)
        )
    )
    assert [response.status_code for response in responses] == [202] * 150
    assert len({response.json()["id"] for response in responses}) == 150
    assert await stored(sessions, subject) == 150
    assert intake.committed_jobs - jobs == 150
    # Far fewer transactions than jobs: the requests waiting on one commit share the next.
    assert intake.commits - commits < 75


async def test_each_entry_gets_its_own_answer(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, handed = intake
    other = {"kind": "sleep", "params": {"seconds": 2}}
    first, replay, reused, plain = await asyncio.gather(
        intake_.submit(prepared(subject), "k1", hash_of(SLEEP)),
        intake_.submit(prepared(subject), "k1", hash_of(SLEEP)),
        intake_.submit(prepared(subject, other), "k1", hash_of(other)),
        intake_.submit(prepared(subject)),
        return_exceptions=True,
    )
    assert isinstance(first, tuple) and first[1] is False
    # The same key twice never shares a batch: the second finds the first's key committed.
    assert isinstance(replay, tuple) and replay == (replay[0], True)
    assert replay[0].id == first[0].id
    assert isinstance(reused, InvalidSubmission)
    assert isinstance(plain, tuple) and plain[1] is False
    assert await stored(sessions, subject) == 2
    assert await handed.handed(2) == sorted([first[0].id, plain[0].id])


async def test_the_quota_holds_within_a_batch_and_frees_refused_keys(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, _ = intake
    results = await asyncio.gather(
        *(intake_.submit(prepared(subject), f"q{n}", hash_of(SLEEP)) for n in range(5)),
        return_exceptions=True,
    )
    accepted = [result for result in results if isinstance(result, tuple)]
    refused = [result for result in results if isinstance(result, TooManyRequests)]
    assert (len(accepted), len(refused)) == (3, 2)
    # Five could go over the limit of three: decided entry by entry, in a transaction.
    assert intake_.claiming_statements == 0
    assert await stored(sessions, subject) == 3
    async with sessions() as session:
        keys = await session.scalar(select(func.count()).where(IdempotencyKey.owner == subject))
    assert keys == 3


async def test_a_keyed_batch_within_the_limit_is_one_statement_and_answers_replays(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, _ = intake
    original, _ = await intake_.submit(prepared(subject), "r1", hash_of(SLEEP))
    statements = intake_.claiming_statements
    other = {"kind": "sleep", "params": {"seconds": 2}}
    replay, new, reused = await asyncio.gather(
        intake_.submit(prepared(subject), "r1", hash_of(SLEEP)),
        intake_.submit(prepared(subject), "r2", hash_of(SLEEP)),
        intake_.submit(prepared(subject, other), "r1", hash_of(other)),
        return_exceptions=True,
    )
    assert intake_.claiming_statements > statements
    assert isinstance(replay, tuple) and replay[0].id == original.id
    assert isinstance(replay, tuple) and replay[1] is True
    assert isinstance(new, tuple) and new[1] is False
    assert isinstance(reused, InvalidSubmission)
    assert await stored(sessions, subject) == 2
    async with sessions() as session:
        holders = dict(
            (
                await session.execute(
                    select(IdempotencyKey.key, IdempotencyKey.job_id).where(
                        IdempotencyKey.owner == subject
                    )
                )
            ).all()
        )
    assert holders == {"r1": original.id, "r2": new[0].id}


async def test_a_failed_replay_lookup_fails_only_the_replay(
    events: EventBus, subject: str, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is committed before its replays are looked up: the jobs it made keep their
    answers (and their events and hand-over), the replay alone gets the error."""
    handed = HandOvers()
    intake_ = Intake(sessions, events, handed, max_active=100)
    intake_.start()
    try:
        await failed_replay(intake_, handed, subject, sessions, monkeypatch)
    finally:
        await intake_.stop()
    assert intake_.claiming_statements == 2


async def failed_replay(
    intake_: Intake,
    handed: HandOvers,
    subject: str,
    sessions: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original, _ = await intake_.submit(prepared(subject), "f1", hash_of(SLEEP))

    async def unreachable(*_: object) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(IdempotencyKeys, "holders", unreachable)
    replay, keyed, plain = await asyncio.gather(
        intake_.submit(prepared(subject), "f1", hash_of(SLEEP)),
        intake_.submit(prepared(subject), "f2", hash_of(SLEEP)),
        intake_.submit(prepared(subject)),
        return_exceptions=True,
    )
    assert isinstance(replay, OSError)
    assert isinstance(keyed, tuple) and keyed[1] is False
    assert isinstance(plain, tuple) and plain[1] is False
    assert await stored(sessions, subject) == 3
    assert await handed.handed(3) == sorted([original.id, keyed[0].id, plain[0].id])


async def test_a_key_past_its_day_makes_a_new_job(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, _ = intake
    gone = uuid.uuid4()
    async with sessions.begin() as session:
        session.add(
            IdempotencyKey(
                owner=subject,
                key="old",
                request_hash=hash_of(SLEEP),
                job_id=gone,
                created_at=datetime.now(UTC) - timedelta(hours=25),
            )
        )
    job, replayed = await intake_.submit(prepared(subject), "old", hash_of(SLEEP))
    assert replayed is False and job.id != gone
    async with sessions() as session:
        holder = await session.get(IdempotencyKey, (subject, "old"))
    assert holder is not None and holder.job_id == job.id
    assert await stored(sessions, subject) == 1


async def test_the_quota_holds_within_a_batch_without_keys(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    """Without keys the jobs and the quota check are one statement; it decides the same."""
    intake_, _ = intake
    other_subject = f"{subject}-other"
    async with sessions.begin() as session:
        session.add(prepared(subject))  # one active job already
    results = await asyncio.gather(
        *(intake_.submit(prepared(owner)) for owner in [subject, other_subject] * 4),
        return_exceptions=True,
    )
    mine, theirs = results[0::2], results[1::2]
    assert [isinstance(result, tuple) for result in mine] == [True, True, False, False]
    assert [isinstance(result, tuple) for result in theirs] == [True, True, True, False]
    assert all(isinstance(result, TooManyRequests) for result in [*mine[2:], theirs[3]])
    assert "3 of your jobs" in str(mine[2])
    assert (await stored(sessions, subject), await stored(sessions, other_subject)) == (3, 3)


async def test_a_job_is_stored_the_same_with_a_key_or_without(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, _ = intake
    (keyed, _), (plain, _) = [
        await intake_.submit(prepared(subject), key, hash_of(SLEEP) if key else None)
        for key in ("same", None)
    ]
    query = text(
        "SELECT *, jsonb_typeof(progress) AS progress_type, jsonb_typeof(result) AS result_type,"
        " jsonb_typeof(error) AS error_type FROM jobs WHERE id = :id"
    )
    async with sessions() as session:
        rows = [
            (await session.execute(query, {"id": job.id})).mappings().one()
            for job in [keyed, plain]
        ]
    varying = {"id", "created_at", "run_at", "dispatched_at"}
    assert {k: v for k, v in rows[0].items() if k not in varying} == {
        k: v for k, v in rows[1].items() if k not in varying
    }
    assert rows[1]["progress_type"] == "null" and rows[1]["params"] == {"seconds": 1.0, "steps": 10}


async def test_an_over_long_value_is_refused_not_cut(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, _ = intake
    long = prepared(subject)
    long.request_id = "r" * 129  # the column holds 128
    with pytest.raises(asyncpg.StringDataRightTruncationError, match="too long"):
        await intake_.submit(long)
    async with sessions() as session:
        cut = await session.scalar(
            text("SELECT count(*) FROM jobs WHERE owner = :owner AND request_id LIKE 'rrr%'"),
            {"owner": subject},
        )
    assert cut == 0


async def test_one_bad_entry_fails_alone(
    intake: tuple[Intake, HandOvers], subject: str, sessions: SessionFactory
) -> None:
    intake_, _ = intake
    bad = prepared(subject)
    bad.priority = "urgent"  # refused by the table's CHECK constraint
    results = await asyncio.gather(
        intake_.submit(prepared(subject)),
        intake_.submit(bad),
        intake_.submit(prepared(subject)),
        return_exceptions=True,
    )
    assert [isinstance(result, tuple) for result in results] == [True, False, True]
    assert isinstance(results[1], Exception)
    assert await stored(sessions, subject) == 2


async def test_quick_and_delayed_jobs_are_not_handed_to_celery(
    intake: tuple[Intake, HandOvers], subject: str
) -> None:
    intake_, handed = intake
    heavy, quick, delayed = await asyncio.gather(
        intake_.submit(prepared(subject)),
        intake_.submit(prepared(subject, {"kind": "echo", "params": {"message": "x"}})),
        intake_.submit(prepared(subject, {**SLEEP, "delay_seconds": 60})),
    )
    for _ in range(50):
        if handed.batches:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert [job for batch in handed.batches for job in batch] == [heavy[0].id]
    assert quick[1] is False and delayed[1] is False


async def test_stopped_intake_answers_503(
    sessions: SessionFactory, events: EventBus, subject: str
) -> None:
    intake = Intake(sessions, events, HandOvers(), max_active=None)
    intake.start()
    await intake.stop()
    with pytest.raises(Unavailable):
        await intake.submit(prepared(subject))
