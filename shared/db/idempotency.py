"""Idempotency keys: claimed in the same transaction that inserts the job."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import IdempotencyKey


class IdempotencyKeys:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        owner: str,
        key: str,
        request_hash: str,
        job_id: uuid.UUID,
        now: datetime,
        expired_before: datetime,
    ) -> IdempotencyKey | None:
        """Take the key for `job_id` and return None, or return the record that holds it.

        A concurrent claimer of the same key waits on the primary key until the first one's
        transaction ends, so the holder it then sees is committed. A key older than
        `expired_before` is taken over as if it were new.
        """
        values = insert(IdempotencyKey).values(
            owner=owner, key=key, request_hash=request_hash, job_id=job_id, created_at=now
        )
        statement = values.on_conflict_do_update(
            index_elements=[IdempotencyKey.owner, IdempotencyKey.key],
            set_={
                "request_hash": values.excluded.request_hash,
                "job_id": values.excluded.job_id,
                "created_at": values.excluded.created_at,
            },
            where=IdempotencyKey.created_at < expired_before,
        ).returning(IdempotencyKey.job_id)
        taken = (await self.session.execute(statement)).scalar_one_or_none()
        if taken == job_id:
            return None
        return await self.session.get(IdempotencyKey, (owner, key), populate_existing=True)
