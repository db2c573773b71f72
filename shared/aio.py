"""asyncio helpers for the loops that run until their task is cancelled."""

from __future__ import annotations

import asyncio


async def pause(seconds: float) -> None:
    """Sleep between two rounds of a loop that runs until cancelled.

    redis-py can lose a cancellation that arrives while a command is in flight: the command
    returns as usual, and the CancelledError never reaches its caller, although the task still
    counts the request (Task.cancelling()). A loop that then slept its whole interval would
    hold up a shutdown waiting for it; this raises the lost cancellation instead.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)


async def cancel_and_wait(task: asyncio.Task[None], patience: float = 1.0, tries: int = 5) -> None:
    """Cancel `task` and wait for it to end, asking again every `patience` seconds (at most
    `tries` times) in case a library lost the request (see `pause`). Its outcome is dropped;
    the caller bounds the whole wait if it must."""
    for _ in range(tries):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=patience)
        if done:
            break
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as never retrieved
