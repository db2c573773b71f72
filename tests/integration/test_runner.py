"""The runner on real Postgres, with handlers that misbehave."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db.engine import SessionFactory, create_engine, create_session_factory
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.events import Envelope, EventBus, JobEvent
from shared.jobs.context import JobContext
from shared.jobs.outcome import Outcome
from shared.jobs.registry import Registry
from shared.jobs.runner import Runner
from shared.jobs.schemas import JobSubmission
from shared.jobs.service import JobService, Principal
from shared.jobs.spec import JobKind
from shared.jobs.states import JobStatus, Lane
from shared.keys import event_stream
from shared.settings import Settings


class Nothing(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Text(BaseModel):
    text: str


async def raises_late(ctx: JobContext, params: Nothing) -> Text:
    await asyncio.sleep(1.0)  # never looks at the cancel flag
    raise RuntimeError("failed after the cancel")


async def slow_to_stop(ctx: JobContext, params: Nothing) -> Text:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        await asyncio.sleep(2)  # cleans up for longer than the runner waits
        raise
    return Text(text="never")


async def fine(ctx: JobContext, params: Nothing) -> Text:
    return Text(text="ok")


# What happened, in order, for the test that checks a group's handlers wait for events.
HAPPENED: list[tuple[str, uuid.UUID]] = []


async def marks(ctx: JobContext, params: Nothing) -> Text:
    HAPPENED.append(("handler", ctx.job_id))
    return Text(text="ok")


async def long(ctx: JobContext, params: Nothing) -> Text:
    await asyncio.sleep(0.4)
    return Text(text="done at last")


async def nul_result(ctx: JobContext, params: Nothing) -> Text:
    ctx.progress(1, 2, "half\x00way")
    return Text(text="bad\x00byte")


async def reports_then_waits(ctx: JobContext, params: Nothing) -> Text:
    ctx.progress(1, 2, "first half")
    await asyncio.sleep(0.2)  # past the runner's progress interval: the progress goes out
    return Text(text="ok")


def kind(name: str, handler: object, timeout: float = 10) -> JobKind[Nothing, Text]:
    return JobKind(
        name=name,
        lane=Lane.HEAVY,
        params=Nothing,
        result=Text,
        handler=handler,  # type: ignore[arg-type]
        description=name,
        default_timeout=timeout,
        max_timeout=timeout,
    )


REGISTRY = Registry(
    [
        kind("raises_late", raises_late),
        kind("slow_to_stop", slow_to_stop, 0.5),
        kind("nul_result", nul_result),
        kind("fine", fine),
        kind("long", long),
        kind("marks", marks),
        kind("reports_then_waits", reports_then_waits),
    ]
)


@pytest.fixture
def runner(settings: Settings, sessions: SessionFactory) -> Runner:
    quick = settings.model_copy(
        update={"cancel_poll_interval": 0.1, "progress_interval": 0.05, "cancel_grace_seconds": 0.3}
    )
    return Runner(sessions, REGISTRY, quick)


async def submit(sessions: SessionFactory, subject: str, name: str) -> Job:
    async with sessions.begin() as session:
        return await JobService(JobRepository(session), REGISTRY).submit(
            Principal(subject), JobSubmission(kind=name, params={}, max_attempts=3)
        )


async def stored(sessions: SessionFactory, job_id: uuid.UUID) -> Job:
    async with sessions() as session:
        job = await JobRepository(session).get(job_id)
    assert job is not None
    return job


async def test_cancel_wins_over_a_handler_that_raises_afterwards(
    runner: Runner, sessions: SessionFactory, subject: str
) -> None:
    job = await submit(sessions, subject, "raises_late")
    running = asyncio.create_task(runner.run(job.id))
    await asyncio.sleep(0.3)
    async with sessions.begin() as session:
        assert await JobRepository(session).request_cancel(job.id) is not None
    report = await running
    assert report.outcome == Outcome.CANCELLED
    final = await stored(sessions, job.id)
    assert final.status == "cancelled" and final.attempts == 1


async def test_a_handler_slow_to_stop_still_ends_timed_out(
    runner: Runner, sessions: SessionFactory, subject: str
) -> None:
    job = await submit(sessions, subject, "slow_to_stop")
    report = await runner.run(job.id)
    assert report.outcome == Outcome.TIMED_OUT
    final = await stored(sessions, job.id)
    assert final.status == "failed" and final.error and final.error["type"] == "timeout"


async def test_a_result_postgres_cannot_store_fails_the_job(
    runner: Runner, sessions: SessionFactory, subject: str
) -> None:
    job = await submit(sessions, subject, "nul_result")
    report = await runner.run(job.id)
    assert report.outcome == Outcome.FAILED
    final = await stored(sessions, job.id)
    assert final.status == "failed" and final.error and "cannot be stored" in final.error["message"]
    assert final.progress is not None and final.progress["message"] == "halfway"


REFUSE_DELIVERIES = [
    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RAISE EXCEPTION 'deliveries refused'; END $$",
    "CREATE TRIGGER refuse BEFORE INSERT ON webhook_deliveries"
    " FOR EACH ROW EXECUTE FUNCTION refuse()",
]


@pytest.fixture
async def refusing(
    settings: Settings, own_database: str, subject: str
) -> AsyncIterator[tuple[SessionFactory, Job]]:
    """A database of its own that refuses webhook deliveries, and a job with a webhook."""
    engine = create_engine(settings.model_copy(update={"database_url": own_database}))
    sessions = create_session_factory(engine)
    try:
        async with engine.begin() as connection:
            for statement in REFUSE_DELIVERIES:
                await connection.execute(text(statement))
        job = await submit(sessions, subject, "fine")
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE jobs SET webhook_url = 'https://example.com/hook' WHERE id = :id"),
                {"id": job.id},
            )
        yield sessions, job
    finally:
        await engine.dispose()


async def test_an_end_with_a_webhook_commits_with_its_delivery_or_not_at_all(
    settings: Settings, refusing: tuple[SessionFactory, Job]
) -> None:
    sessions, job = refusing
    with pytest.raises(DBAPIError, match="deliveries refused"):
        await Runner(sessions, REGISTRY, settings).run(job.id)
    # The end and its delivery are one transaction: without the delivery, no end either.
    final = await stored(sessions, job.id)
    assert final.status == "running" and final.finished_at is None


async def submitted(sessions: SessionFactory, subject: str, kind: str) -> Job:
    async with sessions.begin() as session:
        return await JobService(JobRepository(session), REGISTRY).submit(
            Principal(subject), JobSubmission(kind=kind, params={})
        )


class SlowToAnnounce(EventBus):
    """A real bus whose running events take a while to go out."""

    async def moved(self, *jobs: Job, ran: bool = True) -> None:
        if any(job.status == "running" for job in jobs):
            await asyncio.sleep(0.3)
        await super().moved(*jobs, ran=ran)


@pytest.mark.parametrize("name", ["fine", "reports_then_waits"])
async def test_events_go_out_in_seq_order_however_slow_the_running_event(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis, name: str
) -> None:
    """The running event is published while the handler starts; what comes after waits."""
    quick = settings.model_copy(update={"progress_interval": 0.05})
    runner = Runner(sessions, REGISTRY, quick, SlowToAnnounce(redis, 60))
    job = await submitted(sessions, subject, name)
    report = await runner.run(job.id)
    assert report.outcome == Outcome.SUCCEEDED
    entries = await redis.xrange(event_stream(job.id)) or []
    events = [Envelope.model_validate_json(fields[b"e"]).event for _, fields in entries if fields]
    kinds = [(event.type, event.status.value) for event in events]
    expected = [("status", "running"), ("status", "succeeded")]
    if name == "reports_then_waits":
        expected.insert(1, ("progress", "running"))
    assert kinds == expected
    assert [event.seq for event in events] == list(range(2, 2 + len(expected)))


class BrokenWhileAnnouncing(EventBus):
    """A real bus whose running events fail with an error it does not expect."""

    async def moved(self, *jobs: Job, ran: bool = True) -> None:
        if any(job.status == "running" for job in jobs):
            await asyncio.sleep(0.05)
            raise RuntimeError("no running event today")
        await super().moved(*jobs, ran=ran)


async def test_a_running_event_that_fails_neither_fails_the_attempt_nor_its_end(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings, BrokenWhileAnnouncing(redis, 60))
    report = await runner.run((await submitted(sessions, subject, "fine")).id)
    entries = await redis.xrange(event_stream(report.job_id)) or []
    assert report.outcome == Outcome.SUCCEEDED
    events = [Envelope.model_validate_json(fields[b"e"]).event for _, fields in entries if fields]
    assert [(event.status.value, event.seq) for event in events] == [("succeeded", 3)]
    assert runner._announcing == {}


async def test_a_cancelled_waiter_leaves_the_others_waiting_for_the_running_event(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings)
    job = await submitted(sessions, subject, "fine")
    job.status = JobStatus.RUNNING
    runner._announce(SlowToAnnounce(redis, 60), job)
    first = asyncio.ensure_future(runner._announced(job))
    await asyncio.sleep(0.05)
    first.cancel()
    await runner._announced(job)  # still waits for the publish, not for nothing
    entries = await redis.xrange(event_stream(job.id)) or []
    assert len(entries) == 1 and runner._announcing == {}


class HandBack:
    """Where a group's unstarted jobs go: here, a list (or a failure, when asked)."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.jobs: list[Job] = []

    async def __call__(self, jobs: Sequence[Job]) -> list[uuid.UUID]:
        if self.fails:
            raise ConnectionError("the broker is away")
        self.jobs.extend(jobs)
        return []


def statuses(events: list[JobEvent]) -> list[str]:
    return [event.status.value for event in events]


async def stream(redis: Redis, job_id: uuid.UUID) -> list[JobEvent]:
    entries = await redis.xrange(event_stream(job_id)) or []
    return [Envelope.model_validate_json(fields[b"e"]).event for _, fields in entries if fields]


async def test_a_group_runs_in_turn_and_its_events_are_out_when_it_returns(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    # Past the slow events: a job's slice includes its wait for the earlier jobs' events.
    patient = settings.model_copy(update={"dispatch_group_slice": 5.0})
    runner = Runner(sessions, REGISTRY, patient, SlowToAnnounce(redis, 60))
    jobs = [await submitted(sessions, subject, "fine") for _ in range(3)]
    hand_back = HandBack()
    reports = await runner.run_many([job.id for job in jobs], hand_back)
    assert [(r.job_id, r.outcome) for r in reports] == [(j.id, Outcome.SUCCEEDED) for j in jobs]
    assert hand_back.jobs == [] and runner._announcing == {}
    for job in jobs:
        assert statuses(await stream(redis, job.id)) == ["running", "succeeded"]
    finals = [await stored(sessions, job.id) for job in jobs]
    assert [f.started_at for f in finals] == sorted(f.started_at for f in finals if f.started_at)
    # Each end claimed the next job in the same statement: one moment for both.
    assert [f.started_at for f in finals[1:]] == [f.finished_at for f in finals[:-1]]
    assert all(f.lease_expires_at is None and f.attempts == 1 for f in finals)


async def test_an_end_that_finds_the_next_job_taken_skips_it_and_goes_on(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings, EventBus(redis, 60))
    first, taken, last = [await submitted(sessions, subject, "fine") for _ in range(3)]
    await runner.run(taken.id)  # a duplicate message ran this one already
    reports = await runner.run_many([first.id, taken.id, last.id], HandBack())
    assert [r.outcome for r in reports] == [Outcome.SUCCEEDED, Outcome.SKIPPED, Outcome.SUCCEEDED]
    assert statuses(await stream(redis, taken.id)) == ["running", "succeeded"]
    assert (await stored(sessions, taken.id)).attempts == 1
    ended, after = await stored(sessions, first.id), await stored(sessions, last.id)
    # The claim of `last` was its own statement, after `taken` was found already run.
    assert after.started_at is not None and ended.finished_at is not None
    assert after.started_at > ended.finished_at
    assert statuses(await stream(redis, last.id)) == ["running", "succeeded"]


async def test_a_group_cancelled_after_an_end_claimed_the_next_job_hands_that_job_back(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings, SlowToEnd(redis, 60))
    first, second = [await submitted(sessions, subject, "fine") for _ in range(2)]
    group = asyncio.ensure_future(runner.run_many([first.id, second.id], HandBack()))
    # The first has ended and claimed the second, whose handler waits for those events.
    for _ in range(100):
        if (await stored(sessions, second.id)).status == "running":
            break
        await asyncio.sleep(0.01)
    group.cancel()
    with pytest.raises(asyncio.CancelledError):
        await group
    assert (await stored(sessions, first.id)).status == "succeeded"
    handed = await stored(sessions, second.id)
    assert handed.status == "queued" and handed.error and handed.error["type"] == "worker_lost"
    assert statuses(await stream(redis, second.id)) == ["running", "queued"]
    assert runner._announcing == {}


async def test_a_long_job_hands_the_unstarted_rest_of_its_group_back(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings, EventBus(redis, 60))
    first = await submitted(sessions, subject, "long")
    taken, rest = [await submitted(sessions, subject, "fine") for _ in range(2)]
    later = [await submitted(sessions, subject, "fine") for _ in range(2)]
    await runner.run(taken.id)  # a duplicate message ran this one already
    hand_back = HandBack()
    ids = [first.id, taken.id, rest.id, *(job.id for job in later)]
    reports = await runner.run_many(ids, hand_back)
    assert [(r.job_id, r.outcome) for r in reports] == [(first.id, Outcome.SUCCEEDED)]
    # Only those still waiting go back, in their order, unclaimed.
    assert [job.id for job in hand_back.jobs] == [rest.id, *(job.id for job in later)]
    for job in hand_back.jobs:
        assert (await stored(sessions, job.id)).status == "queued"
    assert statuses(await stream(redis, first.id)) == ["running", "succeeded"]
    # A duplicate of the group skips what has run and runs the rest.
    again = await runner.run_many(ids[1:], HandBack())
    assert [r.outcome for r in again] == [Outcome.SKIPPED, *[Outcome.SUCCEEDED] * 3]


async def test_a_group_whose_rest_cannot_go_back_still_ends_its_long_job(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    """Those left behind wait, handed over but unclaimed, for the dispatcher to send again."""
    runner = Runner(sessions, REGISTRY, settings, EventBus(redis, 60))
    first = await submitted(sessions, subject, "long")
    rest = await submitted(sessions, subject, "fine")
    reports = await runner.run_many([first.id, rest.id], HandBack(fails=True))
    assert [r.outcome for r in reports] == [Outcome.SUCCEEDED]
    assert (await stored(sessions, rest.id)).status == "queued"


async def test_a_cancelled_group_hands_its_running_job_back(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings, EventBus(redis, 60))
    first = await submitted(sessions, subject, "long")
    rest = await submitted(sessions, subject, "fine")
    group = asyncio.ensure_future(runner.run_many([first.id, rest.id], HandBack()))
    await asyncio.sleep(0.2)  # past the slice: the rest went back; the long job runs
    group.cancel()
    with pytest.raises(asyncio.CancelledError):
        await group
    handed = await stored(sessions, first.id)
    assert handed.status == "queued" and handed.error and handed.error["type"] == "worker_lost"
    assert runner._announcing == {}


class SlowToEnd(EventBus):
    """A real bus whose end events take a while, and that notes when each went out."""

    async def moved(self, *jobs: Job, ran: bool = True) -> None:
        if any(job.status == "succeeded" for job in jobs):
            await asyncio.sleep(0.2)
        await super().moved(*jobs, ran=ran)
        HAPPENED.extend((job.status, job.id) for job in jobs)


async def test_a_group_starts_each_handler_once_the_earlier_events_are_out(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    runner = Runner(sessions, REGISTRY, settings, SlowToEnd(redis, 60))
    first = await submitted(sessions, subject, "fine")
    second = await submitted(sessions, subject, "marks")
    HAPPENED.clear()
    reports = await runner.run_many([first.id, second.id, first.id], HandBack())
    assert [r.outcome for r in reports] == [Outcome.SUCCEEDED] * 2  # a repeated id runs once
    assert HAPPENED.index(("succeeded", first.id)) < HAPPENED.index(("handler", second.id))


async def test_a_group_whose_job_raises_hands_the_rest_back(
    settings: Settings, refusing: tuple[SessionFactory, Job], subject: str
) -> None:
    sessions, broken = refusing
    rest = await submit(sessions, subject, "fine")
    hand_back = HandBack()
    with pytest.raises(DBAPIError, match="deliveries refused"):
        await Runner(sessions, REGISTRY, settings).run_many([broken.id, rest.id], hand_back)
    assert [job.id for job in hand_back.jobs] == [rest.id]


async def test_a_job_waiting_out_a_back_off_is_not_handed_back(
    settings: Settings, sessions: SessionFactory, subject: str, redis: Redis
) -> None:
    """A duplicate message ran it meanwhile, and it failed: it waits for its run_at."""
    runner = Runner(sessions, REGISTRY, settings, EventBus(redis, 60))
    first = await submitted(sessions, subject, "long")
    retrying, waiting = [await submitted(sessions, subject, "fine") for _ in range(2)]
    async with sessions.begin() as session:
        await session.execute(
            text("UPDATE jobs SET dispatched_at = NULL WHERE id = :id"), {"id": retrying.id}
        )
    hand_back = HandBack()
    await runner.run_many([first.id, retrying.id, waiting.id], hand_back)
    assert [job.id for job in hand_back.jobs] == [waiting.id]
