"""A subscription's quiet spells, as the hub's idle rounds mark them (no timer per wait)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from api.hub import Quiet, Subscription, Wire
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
    assert subscription.queue.empty()
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) == Quiet(1.0)


async def test_an_event_in_the_period_keeps_it_from_being_quiet() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    subscription.idle_round(1.0)
    event = wire(1)
    subscription.offer(event)
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) is event
    assert subscription.queue.empty()
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) == Quiet(1.0)


async def test_a_watcher_with_events_waiting_is_not_told_it_is_quiet() -> None:
    subscription = Subscription(Principal("someone"), None, size=4)
    subscription.idle_round(1.0)
    event = wire(1)
    subscription.queue.put_nowait(event)  # waiting since before the round
    subscription.idle_round(1.0)
    assert await asyncio.wait_for(subscription.next(), 1) is event
    assert subscription.queue.empty()
