"""Hands due jobs to their executor: Celery for the heavy lane, this process for the quick one.

Jobs due at submission are handed over by the API right after its commit. Delayed jobs, and
retries waiting out their back-off, wait in Postgres (never as Celery ETAs) until this loop
finds them due. One process at a time takes a batch, under an advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from shared.broker import Publisher
from shared.db.engine import SessionFactory
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.jobs.executor import LocalExecutor
from shared.jobs.service import utcnow
from shared.jobs.states import Lane

log = logging.getLogger("jobq.dispatcher")


class Dispatcher:
    def __init__(
        self,
        sessions: SessionFactory,
        publisher: Publisher,
        local: LocalExecutor,
        *,
        interval: float,
        batch: int,
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.local = local
        self.interval = interval
        self.batch = batch

    async def hand_over(self, jobs: Sequence[Job]) -> None:
        """Send committed, due jobs to their executors; any that cannot be sent go back to wait."""
        failed = []
        for job in jobs:
            if job.lane == Lane.QUICK:
                self.local.spawn(job.id)
                continue
            try:
                await self.publisher.publish(job.id, job.priority)
            except Exception as exc:
                log.warning("could not publish job %s (%s); will retry", job.id, exc)
                failed.append(job.id)
        if failed:
            async with self.sessions.begin() as session:
                await JobRepository(session).undispatch(failed)

    async def tick(self) -> int:
        async with self.sessions.begin() as session:
            jobs = await JobRepository(session).take_due(utcnow(), self.batch)
        if jobs:
            await self.hand_over(jobs)
        return len(jobs)

    async def run_forever(self) -> None:
        while True:
            try:
                count = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dispatch failed: %s", exc)
                count = 0
            if count < self.batch:
                await asyncio.sleep(self.interval)
