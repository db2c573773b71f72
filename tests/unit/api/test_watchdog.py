"""The WebSocket watchdog: how it ends a stream (a verdict and one cancellation), and when."""

from __future__ import annotations

import asyncio

import pytest

from api.watchdog import Verdict, Watch, Watchdog

GOING_AWAY = (1001, "lifetime")
TOO_SLOW = (1013, "too slow")


def watchdog(send_timeout: float = 10.0) -> Watchdog:
    return Watchdog(send_timeout, GOING_AWAY, TOO_SLOW)


async def serve(dog: Watchdog, lifetime: float, watches: list[Watch], sending: bool) -> Verdict:
    """A pump as api/routes/events.py writes one, waiting in a send or for an event."""
    watch = dog.watch(lifetime)
    watch.task = asyncio.current_task()
    watches.append(watch)
    try:
        if sending:
            watch.sending_since = asyncio.get_running_loop().time()
        await asyncio.sleep(30)
        return (1000, "finished")
    except asyncio.CancelledError:
        verdict = watch.taken()
        if verdict is None:
            raise
        return verdict
    finally:
        dog.release(watch)


async def test_a_stop_ends_the_handler_with_its_verdict_and_the_task_is_not_left_cancelling() -> (
    None
):
    dog, watches = watchdog(), list[Watch]()
    task = asyncio.create_task(serve(dog, 60, watches, sending=False))
    await asyncio.sleep(0)
    watches[0].stop(1000, "client left")
    watches[0].stop(1013, "second verdict")  # the first one stands
    assert await task == (1000, "client left")
    assert task.cancelling() == 0 and not task.cancelled()
    assert watches[0].closed


async def test_the_lifetime_ends_an_idle_stream_with_going_away() -> None:
    dog, watches = watchdog(), list[Watch]()
    assert await asyncio.wait_for(serve(dog, 0.05, watches, sending=False), 5) == GOING_AWAY


async def test_the_lifetime_ending_mid_send_only_marks_the_stream_expired() -> None:
    dog, watches = watchdog(), list[Watch]()
    task = asyncio.create_task(serve(dog, 0.05, watches, sending=True))
    await asyncio.sleep(0.2)
    assert not task.done() and watches[0].expired and watches[0].verdict is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_round_stops_only_the_sends_that_lasted_the_send_timeout() -> None:
    dog, watches = watchdog(send_timeout=1.0), list[Watch]()
    slow = asyncio.create_task(serve(dog, 60, watches, sending=True))
    idle = asyncio.create_task(serve(dog, 60, watches, sending=False))
    await asyncio.sleep(0)
    now = asyncio.get_running_loop().time()
    dog.check(now + 0.5)
    assert watches[0].verdict is None
    dog.check(now + 1.5)
    assert await slow == TOO_SLOW
    assert watches[1].verdict is None and not idle.done()
    idle.cancel()
    await asyncio.gather(idle, return_exceptions=True)


async def test_a_cancellation_from_outside_is_not_swallowed_by_a_verdict() -> None:
    dog, watches = watchdog(), list[Watch]()
    task = asyncio.create_task(serve(dog, 60, watches, sending=False))
    await asyncio.sleep(0)
    task.cancel()  # e.g. the server shutting down
    watches[0].stop(1000, "client left")
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_verdict_after_release() -> None:
    dog = watchdog()
    watch = dog.watch(60)
    watch.task = asyncio.current_task()
    dog.release(watch)
    watch.stop(1000, "late")
    assert watch.verdict is None and asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_watchdog_runs_rounds_until_stopped() -> None:
    dog, watches = watchdog(send_timeout=0.1), list[Watch]()
    dog.start()
    try:
        verdict = await asyncio.wait_for(serve(dog, 60, watches, sending=True), 5)
    finally:
        await dog.stop()
    assert verdict == TOO_SLOW
