"""A subscription's quiet spells, as the hub's idle rounds mark them (no timer per wait)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from api.hub import Quiet, Resync, Subscription, Wire
from shared.events import JobEvent
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
