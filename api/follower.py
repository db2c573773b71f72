"""Following one job's events: what the WebSocket and SSE endpoints both send.

The order that makes "never misses the end" hold: subscribe to live events first, then read the
snapshot from Postgres, then pass on only events with a higher seq. Whenever the live stream
may have gaps (the watcher fell behind, the hub reconnected, or nothing came for a while), the
job is read again from Postgres and the watcher is brought up to date from the job's retained
stream or, failing that, with a fresh snapshot. So the terminal event always arrives.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from api.deps import Services
from api.hub import Subscription
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.errors import NotFound
from shared.events import EventBus, JobEvent
from shared.jobs.service import Principal
from shared.jobs.states import JobStatus, is_terminal


class Follower:
    def __init__(
        self,
        services: Services,
        bus: EventBus,
        principal: Principal,
        job_id: uuid.UUID,
        subscription: Subscription,
    ) -> None:
        self.services = services
        self.bus = bus
        self.principal = principal
        self.job_id = job_id
        self.subscription = subscription
        self.last = 0
        self.done = False
        self.sent = 0

    async def load(self) -> Job:
        async with self.services.sessions() as session:
            job = await JobRepository(session).get(self.job_id, owner=self.principal.owner_filter)
        if job is None:
            raise NotFound()
        return job

    async def events(self, after: int | None, idle: float) -> AsyncIterator[JobEvent | None]:
        """Events to send, in strictly increasing seq; None when idle (a chance to heartbeat).

        Ends after the terminal event. The caller subscribed before calling this.
        """
        job = await self.load()
        if after is not None:
            self.last = after
        for event in await self._catch_up(job, replay=after is not None):
            yield event
        while not self.done:
            item = await self.subscription.next(idle)
            if isinstance(item, JobEvent):
                if item.seq > self.last:
                    yield self._sent(item)
                continue
            # RESYNC or a quiet spell: Postgres says whether anything was missed.
            for event in await self._catch_up(await self.load(), replay=True):
                yield event
            if item is None and not self.done:
                yield None

    def _sent(self, event: JobEvent) -> JobEvent:
        self.last = event.seq
        self.done = event.terminal
        self.sent += 1
        return event

    async def _catch_up(self, job: Job, *, replay: bool) -> list[JobEvent]:
        if replay and job.seq <= self.last:
            if self.sent:
                return []
            # A resume from the end (or beyond it): the terminal event is always delivered,
            # and a client ahead of the record gets the record.
            if is_terminal(JobStatus(job.status)):
                return [self._sent(JobEvent.of(job, "status"))]
            return self._snapshot(job) if job.seq < self.last else []
        if replay:
            try:
                missed = await self.bus.replay(job.id, self.last)
            except (RedisError, OSError):
                missed = None
            if missed and missed[-1].seq >= job.seq:
                return [self._sent(event) for event in missed]
        return self._snapshot(job)

    def _snapshot(self, job: Job) -> list[JobEvent]:
        """The job as stored; a finished job's snapshot is followed by its terminal event."""
        if not is_terminal(JobStatus(job.status)):
            return [self._sent(JobEvent.of(job, "snapshot"))]
        events = []
        if job.seq - 1 > self.last:
            events.append(self._sent(JobEvent.of(job, "snapshot", seq=job.seq - 1)))
        events.append(self._sent(JobEvent.of(job, "status")))
        return events
