"""Idempotency keys: claimed in the same transaction that inserts the jobs they make."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import IdempotencyKey


@dataclass(frozen=True)
class Claim:
    owner: str
    key: str
    request_hash: str
    job_id: uuid.UUID


def _claim_statement() -> Any:
    """Insert a key, or take over one that expired; returns the rows written. Built once:
    executed with one parameter set per key, its SQL is compiled once per process."""
    table = IdempotencyKey.metadata.tables[IdempotencyKey.__tablename__]
    values = insert(table).values(
        owner=bindparam("owner"),
        key=bindparam("key"),
        request_hash=bindparam("request_hash"),
        job_id=bindparam("job_id"),
        created_at=bindparam("created_at"),
    )
    return values.on_conflict_do_update(
        index_elements=[table.c.owner, table.c.key],
        set_={
            "request_hash": values.excluded.request_hash,
            "job_id": values.excluded.job_id,
            "created_at": values.excluded.created_at,
        },
        where=table.c.created_at < bindparam("expired_before"),
    ).returning(table.c.owner, table.c.key, table.c.job_id)


CLAIM = _claim_statement()


class IdempotencyKeys:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_many(
        self, claims: Sequence[Claim], now: datetime, expired_before: datetime
    ) -> set[tuple[str, str]]:
        """`claim` for many keys in one statement; returns the (owner, key) pairs taken.

        The keys must be distinct. Rows go in (owner, key) order, by code point, as
        `JobRepository.insert_claiming` locks them too: two transactions that claim
        overlapping keys lock them in the same order and cannot deadlock.
        """
        if not claims:
            return set()
        ordered = sorted(claims, key=lambda claim: (claim.owner, claim.key))
        rows = [
            {
                "owner": claim.owner,
                "key": claim.key,
                "request_hash": claim.request_hash,
                "job_id": claim.job_id,
                "created_at": now,
                "expired_before": expired_before,
            }
            for claim in ordered
        ]
        wanted = {(claim.owner, claim.key): claim.job_id for claim in claims}
        return {
            (owner, key)
            for owner, key, job_id in await self.session.execute(CLAIM, rows)
            if wanted.get((owner, key)) == job_id
        }

    async def holders(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Claim]:
        """The committed records that hold these (owner, key) pairs."""
        if not pairs:
            return {}
        rows = await self.session.scalars(
            select(IdempotencyKey).where(
                tuple_(IdempotencyKey.owner, IdempotencyKey.key).in_(pairs)
            )
        )
        return {
            (row.owner, row.key): Claim(row.owner, row.key, row.request_hash, row.job_id)
            for row in rows
        }

    async def release(self, claims: Sequence[Claim]) -> None:
        """Give back keys claimed in this transaction for jobs that were then refused."""
        if claims:
            await self.session.execute(
                delete(IdempotencyKey).where(
                    tuple_(IdempotencyKey.owner, IdempotencyKey.key, IdempotencyKey.job_id).in_(
                        [(claim.owner, claim.key, claim.job_id) for claim in claims]
                    )
                )
            )
