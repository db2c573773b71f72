"""The events hub against real Redis: its subscription is held only while the process has
watchers, and a watcher that came before it took hold is told to reload rather than miss what
went out meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from api.hub import HUB_CLIENT_NAME, Hub, Quiet, Resync, Subscription, Wire
from shared.events import EventBus, JobEvent
from shared.jobs.service import Principal
from shared.jobs.states import JobStatus
from shared.keys import redis_db
from shared.settings import Settings

IDLE = 0.05
LINGER = 0.3


@pytest.fixture
def hub_url(settings: Settings) -> str:
    """The next Redis database (the one `own_broker` uses, flushed around each of its tests), so
    that the hubs counted are these tests' alone: an API process of another test may still hold
    a subscription in the tests' database."""
    parts = urlsplit(settings.redis_url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{db + 1 if db < 15 else db - 1}"))


@pytest.fixture
async def redis(hub_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(hub_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def hub(hub_url: str) -> AsyncIterator[Hub]:
    hub = Hub(hub_url, queue_size=16, max_per_subject=16, idle=IDLE, linger=LINGER)
    hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def hub_clients(redis: Redis) -> int:
    """The hubs subscribed in `redis`'s database."""
    clients = await redis.client_list(_type="pubsub")
    db = str(redis_db(redis))
    return sum(c["name"] == HUB_CLIENT_NAME and c["db"] == db for c in clients)


async def until(check: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def next_item(subscription: Subscription) -> object:
    return await asyncio.wait_for(subscription.next(), 5)


async def next_wire(subscription: Subscription) -> Wire:
    """The next event, past the Quiet the idle rounds queue meanwhile."""
    while True:
        item = await next_item(subscription)
        if not isinstance(item, Quiet):
            assert isinstance(item, Wire), item
            return item


def event(job_id: uuid.UUID, seq: int) -> JobEvent:
    return JobEvent(
        type="progress", job_id=job_id, seq=seq, status=JobStatus.RUNNING, ts=datetime.now(UTC)
    )


async def test_no_watcher_no_subscription_then_the_first_opens_it(hub: Hub, redis: Redis) -> None:
    await asyncio.sleep(5 * IDLE)
    assert not hub.subscribed
    assert await hub_clients(redis) == 0
    job_id = uuid.uuid4()
    with hub.subscribe(Principal("alice"), job_id) as subscription:
        assert hub.subscribed
        # It came before the subscription held: it is told to reload first.
        assert isinstance(await next_item(subscription), Resync)
        await asyncio.wait_for(hub.connected.wait(), 5)
        assert await hub_clients(redis) == 1
        await EventBus(redis, 60).publish("alice", event(job_id, 4))
        assert (await next_wire(subscription)).event.seq == 4


async def test_the_subscription_closes_once_no_one_watched_for_the_linger(
    hub: Hub, redis: Redis
) -> None:
    with hub.subscribe(Principal("alice"), uuid.uuid4()):
        await asyncio.wait_for(hub.connected.wait(), 5)
    left = time.monotonic()
    await until(lambda: _gone(redis))
    assert time.monotonic() - left >= LINGER
    assert not hub.subscribed


async def _gone(redis: Redis) -> bool:
    return await hub_clients(redis) == 0


async def test_a_watcher_within_the_linger_keeps_the_subscription(hub: Hub, redis: Redis) -> None:
    job_id = uuid.uuid4()
    with hub.subscribe(Principal("alice"), job_id):
        await asyncio.wait_for(hub.connected.wait(), 5)
    connects = hub.connects
    with hub.subscribe(Principal("alice"), job_id) as subscription:
        await asyncio.sleep(3 * LINGER)
        assert hub.connects == connects and await hub_clients(redis) == 1
        await EventBus(redis, 60).publish("alice", event(job_id, 2))
        assert (await next_wire(subscription)).event.seq == 2


async def test_a_watcher_after_the_close_gets_a_new_subscription(hub: Hub, redis: Redis) -> None:
    job_id = uuid.uuid4()
    with hub.subscribe(Principal("alice"), job_id):
        await asyncio.wait_for(hub.connected.wait(), 5)
    await until(lambda: _gone(redis))
    with hub.subscribe(Principal("alice"), job_id) as subscription:
        assert isinstance(await next_item(subscription), Resync)
        await until(lambda: _held(redis))
        await EventBus(redis, 60).publish("alice", event(job_id, 7))
        assert (await next_wire(subscription)).event.seq == 7
    assert hub.connects == 2


async def _held(redis: Redis) -> bool:
    return await hub_clients(redis) == 1


async def test_stopping_the_hub_closes_its_subscription(hub_url: str, redis: Redis) -> None:
    hub = Hub(hub_url, queue_size=16, max_per_subject=16, idle=IDLE, linger=60)
    hub.start()
    try:
        with contextlib.ExitStack() as watching:
            watching.enter_context(hub.subscribe(Principal("alice"), None))
            await asyncio.wait_for(hub.connected.wait(), 5)
            await hub.stop()
        assert await hub_clients(redis) == 0
    finally:
        await hub.stop()
