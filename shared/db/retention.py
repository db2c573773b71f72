"""The pruner's queries: finished jobs past their time, what hangs off them, expired keys.

Each runs inside a transaction that holds a transaction-scoped advisory lock of its own, so
one process at a time prunes however many API processes run.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import any_, bindparam, delete, exists, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import IdempotencyKey, Job, WebhookDelivery
from shared.jobs.states import TERMINAL
from shared.keys import PRUNE_LOCK_ID


class Retention:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self) -> bool:
        """Take this transaction's prune lock, if no other process holds it."""
        return bool(
            await self.session.scalar(select(func.pg_try_advisory_xact_lock(PRUNE_LOCK_ID)))
        )

    async def delete_finished(
        self,
        before: datetime,
        limit: int,
        *,
        kinds: Collection[str] | None = None,
        other_than: Collection[str] = (),
    ) -> Sequence[uuid.UUID]:
        """Delete up to `limit` terminal jobs that finished before `before`, oldest first, and
        return their ids. `kinds` keeps to those kinds; `other_than` leaves those kinds out.

        A job whose webhook delivery is still pending stays until it is delivered or given up:
        the delivery reads the job to send it.
        """
        pending = exists().where(
            WebhookDelivery.job_id == Job.id, WebhookDelivery.state == "pending"
        )
        due = select(Job.id).where(
            # finished_at first: the range the partial index ix_jobs_finished serves.
            Job.finished_at.is_not(None),
            Job.finished_at < before,
            Job.status.in_([status.value for status in TERMINAL]),
            ~pending,
        )
        if kinds is not None:
            due = due.where(Job.kind.in_(kinds))
        if other_than:
            due = due.where(Job.kind.not_in(other_than))
        due = due.order_by(Job.finished_at).limit(limit).with_for_update(skip_locked=True)
        query = (
            delete(Job)
            .where(Job.id.in_(due.scalar_subquery()))
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(query)).scalars().all()

    async def delete_deliveries(self, job_ids: Sequence[uuid.UUID]) -> int:
        """Delete the webhook deliveries of these jobs; how many there were."""
        if not job_ids:
            return 0
        # One array parameter, however many ids: a batch may exceed the bind parameter limit.
        ids = bindparam("job_ids", list(job_ids), type_=ARRAY(UUID(as_uuid=True)))
        query = (
            delete(WebhookDelivery)
            .where(WebhookDelivery.job_id == any_(ids))
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
        return len((await self.session.execute(query)).scalars().all())

    async def delete_idempotency_keys(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` idempotency keys claimed before `before`, oldest first."""
        expired = (
            select(IdempotencyKey.owner, IdempotencyKey.key)
            .where(IdempotencyKey.created_at < before)
            .order_by(IdempotencyKey.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        query = (
            delete(IdempotencyKey)
            .where(tuple_(IdempotencyKey.owner, IdempotencyKey.key).in_(expired))
            .returning(IdempotencyKey.key)
            .execution_options(synchronize_session=False)
        )
        return len((await self.session.execute(query)).scalars().all())
