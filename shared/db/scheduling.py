"""The dispatcher's queries: due jobs, jobs no executor claimed, attempts whose lease ran out.

All of them run inside one transaction that holds a transaction-scoped advisory lock, so one
process at a time does this work however many API processes run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Job, WebhookDelivery
from shared.jobs.states import JobStatus
from shared.keys import DISPATCH_LOCK_ID

# A job handed over n times waits claim_timeout * 2**(n-1) before the next, at most 2**6 times.
MAX_BACKOFF_EXPONENT = 6


class Scheduling:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self) -> bool:
        """Take this transaction's dispatch lock, if no other process holds it."""
        return bool(
            await self.session.scalar(select(func.pg_try_advisory_xact_lock(DISPATCH_LOCK_ID)))
        )

    async def _hand_over(self, candidates: object, now: datetime) -> Sequence[Job]:
        query = (
            update(Job)
            .where(Job.id.in_(candidates))  # type: ignore[arg-type]
            .values(dispatched_at=now, dispatches=Job.dispatches + 1)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(query)).scalars().all()

    async def take_due(self, now: datetime, limit: int) -> Sequence[Job]:
        """Queued jobs whose time has come and that were not handed over; marks them handed."""
        due = (
            select(Job.id)
            .where(
                Job.status == JobStatus.QUEUED.value,
                Job.dispatched_at.is_(None),
                Job.run_at <= now,
            )
            .order_by(Job.run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return await self._hand_over(due, now)

    async def take_unclaimed(
        self, now: datetime, claim_timeout: float, limit: int
    ) -> Sequence[Job]:
        """Jobs handed over that no executor claimed in time (a lost message, a crash between
        commit and publish, an API process that died before running a quick job)."""
        wait = func.make_interval(
            0, 0, 0, 0, 0, 0,
            claim_timeout * func.power(2, func.least(Job.dispatches - 1, MAX_BACKOFF_EXPONENT)),
        )  # fmt: skip
        stale = (
            select(Job.id)
            .where(
                Job.status == JobStatus.QUEUED.value,
                Job.dispatched_at.is_not(None),
                Job.dispatched_at < now - wait,
            )
            .order_by(Job.dispatched_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return await self._hand_over(stale, now)

    async def expired_leases(self, now: datetime, limit: int) -> Sequence[tuple[uuid.UUID, int]]:
        """(job id, attempt) of running attempts whose lease ran out: presumed dead."""
        query = (
            select(Job.id, Job.attempts)
            .where(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(query)).all()]

    async def take_due_deliveries(
        self, now: datetime, lease: float, limit: int
    ) -> Sequence[uuid.UUID]:
        """Webhook deliveries due for an attempt; each is leased for `lease` seconds, after which
        it is handed out again if its attempt was never recorded."""
        due = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        query = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due))
            .values(next_attempt_at=now + timedelta(seconds=lease))
            .returning(WebhookDelivery.id)
        )
        return (await self.session.execute(query)).scalars().all()

    async def undispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Hand jobs back to the dispatcher after a failed publish."""
        if not job_ids:
            return
        await self.session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED.value)
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
