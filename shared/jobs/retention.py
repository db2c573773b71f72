"""Retention: finished jobs, and what hangs off them, are pruned once their time is up.

A job that finished more than its kind's `result_ttl` ago (JOBQ_RESULT_TTL for kinds that set
none, and for kinds no longer registered) is deleted with its webhook deliveries, and after
the commit its Redis event stream. Jobs that are not terminal are never touched; neither is a
job whose webhook delivery is still pending. Idempotency keys go once they are older than the
24 hours they are promised for, whether or not their job is still there: within that time a
replay of a pruned job's key gets a conflict rather than a second job.

Every API process runs a pruner; a transaction-scoped advisory lock lets one prune at a time.
A pass deletes in rounds of at most JOBQ_PRUNE_BATCH rows per statement, one transaction each,
and stops after MAX_ROUNDS: a backlog is worked off over successive passes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.aio import pause
from shared.db.engine import SessionFactory
from shared.db.retention import Retention
from shared.jobs.registry import Registry
from shared.jobs.service import IDEMPOTENCY_TTL, utcnow
from shared.keys import event_stream
from shared.settings import Settings

log = logging.getLogger("jobq.retention")

MAX_ROUNDS = 20
# Keys per Redis DEL.
STREAM_CHUNK = 500


@dataclass(frozen=True)
class Cutoff:
    """Jobs that finished before `before` are due: those of `kinds`, or, when `kinds` is None,
    those of every kind but `other_than`."""

    before: datetime
    kinds: frozenset[str] | None = None
    other_than: frozenset[str] = frozenset()


def cutoffs(now: datetime, registry: Registry, default_ttl: float) -> list[Cutoff]:
    """When finished jobs fall due: the kinds with a result_ttl of their own, grouped by it,
    then every other kind, registered or not, by the default."""
    by_ttl: dict[float, set[str]] = {}
    for kind in registry:
        if kind.result_ttl is not None:
            by_ttl.setdefault(kind.result_ttl, set()).add(kind.name)
    found = [
        Cutoff(before, kinds=frozenset(names))
        for ttl, names in sorted(by_ttl.items())
        if (before := _before(now, ttl)) is not None
    ]
    before = _before(now, default_ttl)
    if before is not None:
        found.append(Cutoff(before, other_than=frozenset().union(*by_ttl.values())))
    return found


def _before(now: datetime, ttl: float) -> datetime | None:
    try:
        return now - timedelta(seconds=ttl)
    except OverflowError:  # kept for longer than the calendar reaches: never due
        return None


@dataclass
class PruneReport:
    """What one pass removed."""

    jobs: int = 0
    deliveries: int = 0
    idempotency_keys: int = 0
    streams: int = 0
    rounds: int = 0
    # Another process held the prune lock, so this pass (or its rest) was left to it.
    locked_out: bool = False
    # The pass stopped after MAX_ROUNDS full batches: due rows may be left for the next one.
    remaining: bool = False


class Pruner:
    max_rounds = MAX_ROUNDS

    def __init__(
        self, sessions: SessionFactory, registry: Registry, settings: Settings, redis: Redis
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.settings = settings
        self.redis = redis

    async def prune_once(self, now: datetime) -> PruneReport:
        """One pass: delete what was due at `now`, in rounds, while this process holds the lock."""
        report = PruneReport()
        due = cutoffs(now, self.registry, self.settings.result_ttl)
        batch = self.settings.prune_batch
        while report.rounds < self.max_rounds:
            async with self.sessions.begin() as session:
                retention = Retention(session)
                if not await retention.lock():
                    report.locked_out = True
                    return report
                job_ids: list[uuid.UUID] = []
                full = False
                for cutoff in due:
                    ids = await retention.delete_finished(
                        cutoff.before, batch, kinds=cutoff.kinds, other_than=cutoff.other_than
                    )
                    job_ids.extend(ids)
                    full = full or len(ids) >= batch
                deliveries = await retention.delete_deliveries(job_ids)
                keys = await retention.delete_idempotency_keys(now - IDEMPOTENCY_TTL, batch)
                full = full or keys >= batch
            report.rounds += 1
            report.jobs += len(job_ids)
            report.deliveries += deliveries
            report.idempotency_keys += keys
            report.streams += await self._drop_streams(job_ids)
            if not full:
                break
        else:
            report.remaining = True
        if report.jobs or report.idempotency_keys:
            log.info(
                "pruned %d jobs, %d webhook deliveries, %d idempotency keys, %d event streams",
                report.jobs,
                report.deliveries,
                report.idempotency_keys,
                report.streams,
            )
        return report

    async def _drop_streams(self, job_ids: Sequence[uuid.UUID]) -> int:
        """Delete the jobs' event streams. Best effort: they expire on their own anyway."""
        dropped = 0
        for start in range(0, len(job_ids), STREAM_CHUNK):
            keys = [event_stream(job_id) for job_id in job_ids[start : start + STREAM_CHUNK]]
            try:
                dropped += int(await self.redis.delete(*keys))
            except (RedisError, OSError) as exc:
                log.warning("could not delete %d event streams: %s", len(keys), exc)
        return dropped

    async def run_forever(self) -> None:
        """A pass every JOBQ_PRUNE_INTERVAL seconds until cancelled; failures are logged."""
        while True:
            try:
                await self.prune_once(utcnow())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pruning failed: %s", exc)
            await pause(self.settings.prune_interval)
