"""Following one job's events: what the WebSocket and SSE endpoints both send.

The order that makes "never misses the end" hold: subscribe to live events first, then read the
snapshot from Postgres, then pass on only events with a higher seq. Whenever the live stream
may have gaps (the watcher fell behind, the hub reconnected, or nothing came for a while), the
job is read again from Postgres and, if it moved on, the watcher gets a fresh snapshot. So the
terminal event always arrives. A resume (`?after=SEQ`) replays the job's retained events.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from api.hub import Quiet, Subscription, Wire
from api.snapshots import JobReader
from shared.db.models import Job
from shared.errors import NotFound
from shared.events import EventBus, JobEvent
from shared.jobs.service import Principal
from shared.jobs.states import JobStatus, is_terminal


class Follower:
    def __init__(
        self,
        reader: JobReader,
        bus: EventBus,
        principal: Principal,
        job_id: uuid.UUID,
        subscription: Subscription,
    ) -> None:
        self.reader = reader
        self.bus = bus
        self.principal = principal
        self.job_id = job_id
        self.subscription = subscription
        self.last = 0
        self.done = False

    async def load(self, not_before: float | None = None) -> Job:
        """The job, read after `not_before` (default: when this watcher subscribed)."""
        since = self.subscription.since if not_before is None else not_before
        job = await self.reader.get(self.job_id, since)
        if job is None or not (self.principal.admin or job.owner == self.principal.subject):
            raise NotFound()
        return job

    async def events(self, after: int | None) -> AsyncIterator[Wire | None]:
        """What to send, in strictly increasing seq; None when idle (a chance to heartbeat).

        Ends after the terminal event. The caller subscribed before calling this.
        """
        # This frame lives as long as the socket: it keeps neither the rows it read nor the
        # snapshots it sent (about a kilobyte a watcher).
        wires = (await self._first(after))[::-1]
        while wires:
            yield wires.pop()
        while not self.done:
            item = await self.subscription.next()
            if isinstance(item, Wire):
                if item.event.seq > self.last:
                    yield self._sent(item)
                continue
            # Fell behind, the hub reconnected, or a quiet spell: has the job moved on?
            wires = (await self._catch_up(item.at))[::-1]
            while wires:
                yield wires.pop()
            if isinstance(item, Quiet) and not self.done:
                yield None

    async def _first(self, after: int | None) -> list[Wire]:
        job = await self.load()
        return self._snapshot(job) if after is None else await self._resume(job, after)

    async def _catch_up(self, at: float) -> list[Wire]:
        job = await self.load(at)
        return self._snapshot(job) if job.seq > self.last else []

    def _sent(self, wire: Wire) -> Wire:
        self.last = wire.event.seq
        self.done = wire.event.terminal
        return wire

    def _event(self, job: Job, type: str, seq: int | None = None) -> Wire:
        return self._sent(Wire.of(JobEvent.of(job, type, seq)))  # type: ignore[arg-type]

    async def _resume(self, job: Job, after: int) -> list[Wire]:
        self.last = after
        if job.seq <= after:
            # Resumed from the end, or beyond it: the terminal event is always delivered, and
            # a client ahead of the record gets the record.
            if is_terminal(JobStatus(job.status)):
                return [self._event(job, "status")]
            return self._snapshot(job) if job.seq < after else []
        try:
            missed = await self.bus.replay(job.id, after)
        except (RedisError, OSError):
            missed = None
        if missed and missed[-1].seq >= job.seq:
            return [self._sent(Wire.of(event)) for event in missed]
        return self._snapshot(job)

    def _snapshot(self, job: Job) -> list[Wire]:
        """The job as stored; a finished job's snapshot is followed by its terminal event."""
        if not is_terminal(JobStatus(job.status)):
            return [self._event(job, "snapshot")]
        wires = []
        if job.seq - 1 > self.last:
            wires.append(self._event(job, "snapshot", seq=job.seq - 1))
        wires.append(self._event(job, "status"))
        return wires
