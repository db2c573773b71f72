"""One timekeeper for every open WebSocket: ends a stream whose client stopped reading, and
one whose maximum lifetime is up.

A stream is served by a task that pumps events to the socket and one that reads from the
client; the handler that started them waits for the pump. The watchdog, and the reader when
the client leaves, end a stream by giving it a verdict (the close code and reason) and
cancelling the pump at the await it is in, which the pump turns into that close
(`Watch.taken`). The pump is a task of its own rather than the handler's: its every wake-up
then resumes three frames, not the twenty of the ASGI stack under the handler.

A client that stopped reading is found by one round per process, every half of
JOBQ_WS_SEND_TIMEOUT, over the sends in flight: a timer armed around every send cost as much
as the send itself under fan-out. Lifetimes are one timer per socket, armed once.
"""

from __future__ import annotations

import asyncio

from shared.aio import cancel_and_wait, pause

Verdict = tuple[int, str]


class Watch:
    """One stream's timekeeping, read and written by its pump, its reader and the watchdog."""

    __slots__ = ("_timer", "closed", "expired", "sending_since", "task", "verdict")

    def __init__(self) -> None:
        self.task: asyncio.Task[Verdict] | None = None  # the pump, set once it is started
        self._timer: asyncio.TimerHandle | None = None
        self.sending_since: float | None = None  # loop time the send in flight started
        self.expired = False  # the lifetime ended during a send: end after it
        self.verdict: Verdict | None = None
        self.closed = False

    def stop(self, code: int, reason: str) -> None:
        """End the stream with this close, at whatever await its pump is in."""
        if self.closed or self.verdict is not None or self.task is None:
            return
        self.verdict = (code, reason)
        self.task.cancel()

    def arm(self, timer: asyncio.TimerHandle) -> None:
        self._timer = timer

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()

    def taken(self) -> Verdict | None:
        """In the pump, on CancelledError: the verdict if the cancellation was this watch's
        alone (then it is absorbed), None if the task is being cancelled from outside too."""
        if self.verdict is None or self.task is None or self.task.uncancel() > 0:
            return None
        return self.verdict


class Watchdog:
    def __init__(self, send_timeout: float, going_away: Verdict, too_slow: Verdict) -> None:
        self.send_timeout = send_timeout
        self.going_away = going_away
        self.too_slow = too_slow
        self._open: set[Watch] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._rounds(), name="jobq-ws-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    def watch(self, lifetime: float) -> Watch:
        """Start keeping time for a stream; set `task` to its pump, `release` when done."""
        watch = Watch()
        watch.arm(asyncio.get_running_loop().call_later(lifetime, self._expire, watch))
        self._open.add(watch)
        return watch

    def release(self, watch: Watch) -> None:
        """The stream is ending: no verdict, no cancellation after this."""
        watch.close()
        self._open.discard(watch)

    def _expire(self, watch: Watch) -> None:
        if watch.sending_since is None:
            watch.stop(*self.going_away)
        else:
            # Time is up in the middle of a send: let it finish, so that a terminal event that
            # went out is followed by 1000, never by 1001 and its resume.
            watch.expired = True

    def check(self, now: float) -> None:
        """One round: stop every stream whose send in flight has lasted the send timeout."""
        for watch in tuple(self._open):
            since = watch.sending_since
            if since is not None and now - since >= self.send_timeout:
                watch.stop(*self.too_slow)

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await pause(self.send_timeout / 2)
            self.check(loop.time())
