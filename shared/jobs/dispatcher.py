"""Hands jobs to their executor, and rescues the ones that got lost on the way.

Jobs due at submission are handed over by the API right after its commit. This loop, in one
process at a time (a transaction-scoped advisory lock), does the rest on every tick:
- delayed jobs, and retries waiting out their back-off, once due (never as Celery ETAs);
- jobs handed over that no executor claimed within `claim_timeout` (a lost Redis message, a
  crash between commit and publish, an API that died before running a quick job);
- running attempts whose lease expired (a worker SIGKILLed, a host gone): re-queued as a new
  attempt, or failed with `worker_lost` once the job's attempts are spent.
Heavy jobs go to Celery; quick ones run in this process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.aio import pause
from shared.broker import Publisher
from shared.db.engine import SessionFactory
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.db.scheduling import Scheduling
from shared.errors import StaleAttempt
from shared.events import EventBus
from shared.jobs.executor import LocalExecutor
from shared.jobs.service import utcnow
from shared.jobs.states import ErrorType, JobStatus, Lane

log = logging.getLogger("jobq.dispatcher")

WORKER_LOST = "the attempt's worker stopped renewing its lease (it died or hung)"


@dataclass
class Tick:
    handed: list[Job] = field(default_factory=list)
    rescued: list[Job] = field(default_factory=list)
    webhooks: list[uuid.UUID] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        sessions: SessionFactory,
        publisher: Publisher,
        local: LocalExecutor,
        events: EventBus | None,
        *,
        interval: float,
        batch: int,
        claim_timeout: float,
        webhook_lease: float = 60.0,
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.local = local
        self.events = events
        self.interval = interval
        self.batch = batch
        self.claim_timeout = claim_timeout
        self.webhook_lease = webhook_lease

    async def hand_over(self, jobs: Sequence[Job]) -> None:
        """Send committed jobs to their executors; any that cannot be sent go back to wait.
        The heavy ones go to Celery together, in one thread hop over one producer."""
        heavy = []
        for job in jobs:
            if job.lane == Lane.QUICK:
                self.local.spawn(job.id)
            else:
                heavy.append(job)
        failed = await self.publisher.publish_many(heavy) if heavy else []
        if failed:
            async with self.sessions.begin() as session:
                await Scheduling(session).undispatch(failed)

    async def tick(self) -> Tick:
        now = utcnow()
        work = Tick()
        if not self.publisher.healthy:
            await asyncio.to_thread(self.publisher.probe)
        async with self.sessions.begin() as session:
            scheduling = Scheduling(session)
            if not await scheduling.lock():
                return work
            work.handed.extend(await scheduling.take_due(now, self.batch))
            work.handed.extend(await scheduling.take_unclaimed(now, self.claim_timeout, self.batch))
            work.webhooks.extend(
                await scheduling.take_due_deliveries(now, self.webhook_lease, self.batch)
            )
            repository = JobRepository(session)
            for job_id, attempt in await scheduling.expired_leases(now, self.batch):
                try:
                    work.rescued.append(await self._rescue(repository, job_id, attempt))
                except StaleAttempt:
                    continue
        for job in work.rescued:
            log.warning("job %s attempt %d lost its worker: %s", job.id, job.attempts, job.status)
            if self.events is not None:
                await self.events.moved(job)
        if work.handed:
            await self.hand_over(work.handed)
        for delivery_id in work.webhooks:
            try:
                await asyncio.to_thread(self.publisher.send_webhook, delivery_id)
            except Exception as exc:  # its lease runs out and it is handed out again
                log.warning("could not publish webhook delivery %s (%s)", delivery_id, exc)
        return work

    @staticmethod
    async def _rescue(repository: JobRepository, job_id: uuid.UUID, attempt: int) -> Job:
        job = await repository.get(job_id)
        assert job is not None
        error = {"type": ErrorType.WORKER_LOST.value, "message": WORKER_LOST}
        if attempt < job.max_attempts:
            return await repository.requeue(job.id, attempt, run_at=utcnow(), error=error)
        return await repository.finish(job.id, attempt, JobStatus.FAILED, utcnow(), error=error)

    async def run_forever(self) -> None:
        while True:
            try:
                work = await self.tick()
                busy = max(len(work.handed), len(work.rescued), len(work.webhooks)) >= self.batch
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dispatch failed: %s", exc)
                busy = False
            if not busy:
                await pause(self.interval)
