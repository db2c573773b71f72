"""Loops that run until cancelled stop even when a library loses the cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from shared.aio import cancel_and_wait, pause
from shared.jobs.dispatcher import Dispatcher
from shared.jobs.retention import Pruner


async def loses_a_cancellation(*_: Any) -> None:
    """What redis-py does now and then: the command returns as if no cancel had come."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)


async def started(task: asyncio.Task[None]) -> None:
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()


async def test_pause_raises_a_cancellation_that_was_lost() -> None:
    async def loop() -> None:
        while True:
            await loses_a_cancellation()
            await pause(60)

    task = asyncio.create_task(loop())
    await started(task)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done and task.cancelled()


async def test_a_plain_sleep_would_have_slept_through_it() -> None:
    async def loop() -> None:
        while True:
            await loses_a_cancellation()
            await asyncio.sleep(60)

    task = asyncio.create_task(loop())
    await started(task)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done and task.cancelling() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_pause_sleeps_when_nothing_was_cancelled() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await pause(0.05)
    assert loop.time() - start >= 0.05


async def test_cancel_and_wait_asks_again() -> None:
    async def once_deaf() -> None:
        await loses_a_cancellation()
        await asyncio.sleep(30)

    task = asyncio.create_task(once_deaf())
    await started(task)
    await asyncio.wait_for(cancel_and_wait(task, patience=0.05), 5)
    assert task.cancelled()


async def test_cancel_and_wait_gives_up_after_its_tries() -> None:
    deaf = True

    async def loop() -> None:
        while deaf:
            await loses_a_cancellation()

    task = asyncio.create_task(loop())
    await started(task)
    await asyncio.wait_for(cancel_and_wait(task, patience=0.02, tries=3), 5)
    assert not task.done()
    deaf = False
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_cancel_and_wait_retrieves_a_failure() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)


@pytest.mark.parametrize("make", ["pruner", "dispatcher"])
async def test_the_background_loops_stop_although_a_round_lost_the_cancel(
    make: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop: Any
    if make == "pruner":
        settings = type("S", (), {"prune_interval": 300.0})()
        loop = Pruner(None, None, settings, None)  # type: ignore[arg-type]
        monkeypatch.setattr(loop, "prune_once", loses_a_cancellation)
    else:
        loop = Dispatcher(
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            None,
            interval=300.0,
            batch=10,
            claim_timeout=30.0,
        )
        monkeypatch.setattr(loop, "tick", loses_a_cancellation)
    task = asyncio.create_task(loop.run_forever())
    await started(task)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done and task.cancelled()
