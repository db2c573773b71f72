"""The event bus against real Redis: what one send leaves in the streams, on the channel and in
the metrics hash, and that it never raises."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from shared.db.models import Job
from shared.events import Envelope, EventBus, JobEvent
from shared.keys import JOB_METRICS, event_stream
from shared.metrics import JobFigures

RETENTION = 120


def ended(kind: str, seconds: float) -> Job:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(
        id=uuid.uuid4(),
        owner="alice",
        kind=kind,
        status="succeeded",
        attempts=1,
        seq=3,
        run_at=started,
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
        result={"ok": True},
    )


async def figures(redis: Redis) -> JobFigures:
    return JobFigures.parse(await redis.hgetall(JOB_METRICS))


async def test_one_send_appends_publishes_and_counts_each_job(redis: Redis) -> None:
    bus = EventBus(redis, RETENTION)
    kind = f"k{uuid.uuid4().hex[:8]}"
    jobs = [ended(kind, 0.25), ended(kind, 0.00001)]  # a run time whose repr has an exponent
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(bus.channel)
        await bus.moved(*jobs)
        heard = []
        for _ in range(50):
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                heard.append(Envelope.model_validate_json(message["data"]).event.job_id)
            if len(heard) == len(jobs):
                break
    assert heard == [job.id for job in jobs]
    for job in jobs:
        entries = await redis.xrange(event_stream(job.id)) or []
        assert len(entries) == 1
        fields = entries[0][1] or {}
        event = Envelope.model_validate_json(fields[b"e"]).event
        assert (event.job_id, event.status, event.seq) == (job.id, "succeeded", 3)
        assert 0 < await redis.ttl(event_stream(job.id)) <= RETENTION
    counted = await figures(redis)
    assert counted.finished[(kind, "succeeded")] == 2
    assert counted.duration[kind].sum == pytest.approx(0.25001)
    assert sum(counted.duration[kind].buckets.values()) == 2


async def test_a_send_after_redis_forgot_the_script_loads_it_again(redis: Redis) -> None:
    bus = EventBus(redis, RETENTION)
    first, second = ended("echo", 0.1), ended("echo", 0.1)
    await bus.moved(first)
    await redis.script_flush()
    await bus.moved(second)
    assert len(await redis.xrange(event_stream(second.id)) or []) == 1


async def test_events_without_a_transition_renew_the_streams_expiry(redis: Redis) -> None:
    bus = EventBus(redis, RETENTION)
    job_id = uuid.uuid4()
    earlier, *events = [
        JobEvent(type="progress", job_id=job_id, seq=seq, status="running", ts=datetime.now(UTC))
        for seq in (3, 4, 5)
    ]
    await bus.publish("alice", earlier)
    await redis.expire(event_stream(job_id), 5)
    await bus.publish("alice", *events)
    assert await redis.ttl(event_stream(job_id)) > 5
    assert await bus.replay(job_id, 2) == [earlier, *events]
    assert await bus.replay(job_id, 3) == events


async def test_a_send_with_redis_away_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    away = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        await asyncio.wait_for(EventBus(away, RETENTION).moved(ended("echo", 0.1)), 10)
    finally:
        await away.aclose()
    assert "could not publish 1 event(s)" in caplog.text
