"""A subscription's quiet spells, as the hub's idle rounds mark them (no timer per wait)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from api.hub import Hub, Quiet, Resync, Subscription, Wire
from shared.events import Envelope, JobEvent
from shared.jobs.service import Principal
from shared.jobs.states import JobStatus


def wire(seq: int) -> Wire:
    event = JobEvent(
        type="progress",
        job_id=uuid.uuid4(),
        seq=seq,
        status=JobStatus.RUNNING,
        ts=datetime.now(UTC),
    )
    return Wire.of(event)


async def test_a_new_subscription_is_quiet_only_after_a_whole_round() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    subscription.idle_round(1.0)  # it subscribed during this period
    assert not subscription.items
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) == Quiet(1.0)


async def test_an_event_in_the_period_keeps_it_from_being_quiet() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    subscription.idle_round(1.0)
    event = wire(1)
    subscription.offer(event)
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) is event
    assert not subscription.items
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) == Quiet(1.0)


async def test_a_watcher_with_events_waiting_is_not_told_it_is_quiet() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    subscription.idle_round(1.0)
    event = wire(1)
    subscription.items.append(event)  # waiting since before the round
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) is event
    assert not subscription.items


async def test_a_waiting_watcher_wakes_for_the_next_item_in_order() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    waiting = asyncio.ensure_future(subscription.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    first, second = wire(1), wire(2)
    subscription.offer(first)
    subscription.offer(second)
    assert await asyncio.wait_for(waiting, 1) is first
    assert await asyncio.wait_for(subscription.next(), 1) is second


async def test_a_watcher_that_falls_behind_is_told_to_resync_and_nothing_else() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    for seq in range(1, 6):  # one more than fits
        subscription.offer(wire(seq))
    item = await asyncio.wait_for(subscription.next(), 1)
    assert isinstance(item, Resync)
    assert not subscription.items and subscription.overflows == 1


async def test_a_cancelled_wait_leaves_the_subscription_usable() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    waiting = asyncio.ensure_future(subscription.next())
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    event = wire(1)
    subscription.offer(event)
    assert await asyncio.wait_for(subscription.next(), 1) is event


class Published:
    """What `pubsub.listen()` yields: messages as redis-py gives them."""

    def __init__(self, *data: bytes) -> None:
        self.data = data

    async def listen(self) -> AsyncIterator[dict[str, object]]:
        yield {"type": "subscribe", "data": 1}
        for item in self.data:
            yield {"type": "message", "data": item}


async def test_the_hub_reads_events_only_while_someone_watches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub("redis://127.0.0.1:1/0", queue_size=8, max_per_subject=8, idle=60)
    event = wire(3).event
    good = Envelope(owner="someone", event=event).model_dump_json().encode()
    await hub._listen(Published(b"not json"))
    assert "malformed" not in caplog.text  # nobody watches: not even parsed
    with hub.subscribe(Principal("someone"), event.job_id) as subscription:
        await hub._listen(Published(b"not json", good))
        assert "malformed" in caplog.text
        item = await subscription.next()
    assert isinstance(item, Wire) and item.event.seq == 3
