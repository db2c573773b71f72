"""The pulse of a running attempt: while the handler runs, write its progress (coalesced),
renew its lease, read its cancel flag, and stop it on cancel or timeout after a grace period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from shared.db.engine import SessionFactory, is_transient
from shared.db.models import Job
from shared.db.repository import JobRepository, Pulse
from shared.events import EventBus, JobEvent
from shared.jobs.context import JobContext, ProgressUpdate
from shared.jobs.outcome import Stop
from shared.jobs.schemas import Progress
from shared.jobs.service import utcnow
from shared.jobs.states import JobStatus
from shared.settings import Settings

log = logging.getLogger("jobq.pulse")


def lease_until(settings: Settings) -> datetime:
    """When a lease taken or renewed now runs out."""
    return utcnow() + timedelta(seconds=settings.lease_seconds)


class LostOwnership(Exception):
    """The attempt no longer owns its job: a newer attempt, or a cancel, finished it."""


class Heart:
    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        events: EventBus | None,
        job: Job,
        ctx: JobContext,
        announced: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.sessions = sessions
        # Awaited before a progress event goes out: the attempt's running event goes first.
        self.announced = announced
        self.settings = settings
        self.events = events
        self.job = job
        self.ctx = ctx

    async def beat_until_done(self, task: asyncio.Future[Any]) -> Stop | None:
        """Returns why the handler was told to stop (None if it ended by itself).

        Raises LostOwnership when the attempt lost its job while the handler was running.
        """
        loop = asyncio.get_running_loop()
        settings = self.settings
        started = loop.time()
        deadline = started + self.job.timeout_seconds
        renew_every = settings.lease_seconds / 3
        next_check = started + settings.cancel_poll_interval
        next_renewal = started + renew_every
        stop: Stop | None = None
        stop_at = 0.0
        while not task.done():
            now = loop.time()
            wake = min(
                now + settings.progress_interval,
                deadline if stop is None else stop_at + settings.cancel_grace_seconds,
            )
            await asyncio.wait({task}, timeout=max(0.0, wake - now))
            if task.done():
                break
            now = loop.time()
            update = self.ctx.take_progress()
            renew = now >= next_renewal
            if update is not None or renew or now >= next_check:
                next_check = now + settings.cancel_poll_interval
                pulse = await self._beat(update, renew)
                if pulse is not None:
                    if renew:
                        next_renewal = now + renew_every
                    if pulse.cancel_requested and stop is None:
                        stop, stop_at = Stop.CANCEL, now
                        self.ctx.mark_cancelled()
            if stop is None and now >= deadline:
                stop, stop_at = Stop.TIMEOUT, now
                self.ctx.mark_cancelled()
            if stop is not None and now >= stop_at + settings.cancel_grace_seconds:
                log.warning("job %s ignored its %s; stopping it", self.job.id, stop)
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
                break
        return stop

    async def _beat(self, update: ProgressUpdate | None, renew: bool) -> Pulse | None:
        """One write (or read). None if the database could not be reached this time."""
        job = self.job
        try:
            async with self.sessions.begin() as session:
                pulse = await JobRepository(session).save_progress(
                    job.id,
                    job.attempts,
                    update.as_json() if update else None,
                    lease_until(self.settings) if renew else None,
                )
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Progress is best effort; the outcome is not. Keep the figures for next time.
            log.warning("job %s: could not record progress (%s)", job.id, exc)
            if update is not None:
                self.ctx.restore_progress(update)
            return None
        if pulse is None:
            raise LostOwnership(str(job.id))
        if update is not None and self.events is not None:
            event = JobEvent(
                type="progress",
                job_id=job.id,
                seq=pulse.seq,
                status=JobStatus.RUNNING,
                progress=Progress.model_validate(update.as_json()),
                ts=utcnow(),
            )
            if self.announced is not None:
                await self.announced()
            await self.events.publish(job.owner, event)
        return pulse
