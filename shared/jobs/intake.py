"""Group commit for submissions: jobs that arrive together are committed together.

Every submission of an API process goes through its Intake. A request that finds it idle is
committed at once; requests that arrive while a transaction is in flight wait for the next
one, which takes all of them (up to `max_batch`) in a single statement sent in autocommit: the
Idempotency-Keys claimed, the jobs inserted (those with a key only if they took it) and each
subject's limit of active jobs checked, together. A keyed batch that could take a subject over
its limit goes as a transaction instead (keys, count, jobs, commit), which refuses the jobs
over it and gives their keys back. Either way the limit is checked against the active jobs the
statement sees: batches committed at the same moment by other API processes are not counted,
and can take a subject a few jobs over it. Under load the batches grow by themselves, and a round
trip, a commit and its WAL flush are shared by all the jobs in it.

After the commit the jobs' events go out in one Redis call, then each request gets its
answer, and the heavy jobs due now go to Celery over one producer in one thread hop while the
next batch commits (one hand-over at a time, so a slow broker slows the intake rather than
piling up messages in memory).

Each entry is answered as it would have been alone: its new job; for a key replayed with the
same body, the original job; for a key reused with another body, 422; 409 when the original
is gone; 429 over the subject's limit of active jobs. Two entries with the same key never
share a batch: the second waits for the next one and finds the first's key there. A database
error fails the batch's entries (503 when the database is unreachable); any other error makes
the batch's entries go again one at a time, so one bad entry fails only itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from shared.aio import cancel_and_wait
from shared.db.engine import SessionFactory, Statements, is_transient
from shared.db.idempotency import Claim, IdempotencyKeys
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.errors import Unavailable
from shared.events import EventBus
from shared.jobs.service import IDEMPOTENCY_TTL, key_reused, original_gone, over_quota, utcnow
from shared.jobs.states import Lane

log = logging.getLogger("jobq.intake")

# Rows per batch. The single statements bind one array per column, whatever the batch's size;
# the transaction (a keyed batch near a limit) about 25 parameters a row, far below Postgres's
# 32,767 a statement.
MAX_BATCH = 256

Outcome = tuple[Job, bool] | BaseException


@dataclass(eq=False)
class Entry:
    job: Job
    key: str | None
    request_hash: str | None
    future: asyncio.Future[tuple[Job, bool]] = field(repr=False)

    @property
    def pair(self) -> tuple[str, str] | None:
        return None if self.key is None else (self.job.owner, self.key)

    def settle(self, outcome: Outcome) -> None:
        if self.future.done():  # the request went away
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


@dataclass
class Settled:
    """What one transaction decided: the jobs it inserted, and every other entry's answer."""

    new: list[Entry] = field(default_factory=list)
    answers: list[tuple[Entry, Outcome]] = field(default_factory=list)


class Intake:
    def __init__(
        self,
        sessions: SessionFactory,
        events: EventBus,
        hand_over: Callable[[Sequence[Job]], Awaitable[None]],
        *,
        max_active: int | None,
        max_batch: int = MAX_BATCH,
        failpoints: Collection[str] = (),
    ) -> None:
        self.sessions = sessions
        # Each batch is one plain statement, without a session (see JobRepository.direct).
        self.statements = Statements(sessions.kw["bind"])
        self.events = events
        self.hand_over = hand_over
        self.max_active = max_active
        self.max_batch = max_batch
        self.failpoints = failpoints
        self._queue: deque[Entry] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[Entry] = []
        self._handing: asyncio.Task[None] | None = None
        # Committed transactions and the jobs they inserted, for the tests and the bench.
        self.commits = 0
        self.committed_jobs = 0
        # Keyed batches committed in one statement (the rest: near a subject's limit).
        self.claiming_statements = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobq-intake")

    async def stop(self) -> None:
        """Stop taking submissions; what waits gets 503 (its transaction never began)."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        for entry in [*self._in_flight, *self._queue]:
            entry.settle(Unavailable("the API is shutting down; submit again"))
        self._queue.clear()
        self._in_flight = []
        if self._handing is not None:
            await asyncio.wait({self._handing})

    async def submit(
        self, job: Job, key: str | None = None, request_hash: str | None = None
    ) -> tuple[Job, bool]:
        """Commit a prepared job (under `key`, if given): (the job, whether it is an earlier
        one replayed). Raises what the submission alone would have raised."""
        if self._task is None or self._task.done():
            raise Unavailable("the API is shutting down; submit again")
        future: asyncio.Future[tuple[Job, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append(Entry(job, key, request_hash, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            batch = self._take()
            if not batch:
                continue
            self._in_flight = batch
            try:
                await self._round(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: answer what is left, and keep the intake alive
                log.exception("submission batch failed")
                for entry in batch:
                    entry.settle(Unavailable())
            self._in_flight = []

    async def _round(self, batch: list[Entry]) -> None:
        settled = await self._commit(batch)
        if settled.new and "after-commit" in self.failpoints:
            os._exit(70)  # a crash between commit and dispatch, for the fault tests
        for entry, outcome in settled.answers:
            entry.settle(outcome)
        jobs = [entry.job for entry in settled.new]
        if jobs:
            await self.events.moved(*jobs)
        for entry in settled.new:
            entry.settle((entry.job, False))
        due = [job for job in jobs if job.lane == Lane.HEAVY and job.dispatched_at]
        if due:
            if self._handing is not None:
                await asyncio.wait({self._handing})
            self._handing = asyncio.create_task(self._hand_over(due))

    async def _hand_over(self, jobs: list[Job]) -> None:
        try:
            await self.hand_over(jobs)
        except Exception:  # they stay dispatched; the dispatcher sends them again if unclaimed
            log.exception("could not hand over %d jobs", len(jobs))

    def _take(self) -> list[Entry]:
        """Up to max_batch waiting entries, in order; a key seen twice waits for the next."""
        batch: list[Entry] = []
        later: list[Entry] = []
        pairs: set[tuple[str, str]] = set()
        while self._queue and len(batch) < self.max_batch:
            entry = self._queue.popleft()
            if entry.future.done():
                continue
            pair = entry.pair
            if pair is not None:
                if pair in pairs:
                    later.append(entry)
                    continue
                pairs.add(pair)
            batch.append(entry)
        self._queue.extendleft(reversed(later))
        return batch

    async def _commit(self, batch: list[Entry]) -> Settled:
        try:
            settled = await self._transaction(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1 or is_transient(exc):
                return Settled(answers=[(entry, exc) for entry in batch])
            log.warning("a batch of %d submissions failed (%s); one at a time", len(batch), exc)
            settled = Settled()
            for entry in batch:
                alone = await self._commit([entry])
                settled.new += alone.new
                settled.answers += alone.answers
            return settled
        self.commits += 1
        self.committed_jobs += len(settled.new)
        return settled

    async def _transaction(self, batch: list[Entry]) -> Settled:
        if all(entry.key is None for entry in batch):
            return await self._statement(batch)
        settled = await self._claiming_statement(batch)
        if settled is not None:
            return settled
        return await self._keyed_transaction(batch)

    async def _claiming_statement(self, batch: list[Entry]) -> Settled | None:
        """A batch with Idempotency-Keys, in one statement, its own transaction: the keys
        claimed, and the jobs whose key was taken. None, with nothing written, if a subject's
        active jobs could go over its limit (then `_keyed_transaction` decides)."""
        now = utcnow()
        keys = [
            None if entry.key is None else (entry.key, entry.request_hash or "") for entry in batch
        ]
        taken = await JobRepository.direct(self.statements).insert_claiming(
            [entry.job for entry in batch], keys, now, now - IDEMPOTENCY_TTL, self.max_active
        )
        if taken is None:
            return None
        self.claiming_statements += 1
        settled = Settled(
            new=[entry for entry in batch if entry.pair is None or entry.pair in taken]
        )
        held = [entry for entry in batch if entry.pair is not None and entry.pair not in taken]
        if not held:
            return settled
        # The batch is committed: from here an error is the held entries' alone, never the
        # batch's (which `_commit` would answer, or send again, as if nothing were written).
        try:
            # The holders are committed: the insert waited for any that was not.
            async with self.sessions() as session:
                settled.answers += await self._replays(
                    IdempotencyKeys(session), JobRepository(session), held
                )
        except Exception as exc:
            log.warning("could not look up %d replayed keys (%s)", len(held), exc)
            settled.answers += [(entry, exc) for entry in held]
        return settled

    async def _keyed_transaction(self, batch: list[Entry]) -> Settled:
        """A batch with Idempotency-Keys near a subject's limit: claimed, counted and inserted
        in one transaction, over several statements; the keys of refused jobs are released."""
        now = utcnow()
        settled = Settled()
        async with self.sessions.begin() as session:
            keys = IdempotencyKeys(session)
            jobs = JobRepository(session)
            claims = {
                entry: Claim(entry.job.owner, entry.key, entry.request_hash or "", entry.job.id)
                for entry in batch
                if entry.key is not None
            }
            taken = await keys.claim_many(list(claims.values()), now, now - IDEMPOTENCY_TTL)
            held = [entry for entry in claims if entry.pair not in taken]
            if held:
                settled.answers += await self._replays(keys, jobs, held)
            new = [entry for entry in batch if entry.pair is None or entry.pair in taken]
            if self.max_active is not None and new:
                active = await jobs.active_counts(
                    sorted({entry.job.owner for entry in new}), self.max_active
                )
                new, refused = self._within_quota(new, active, self.max_active)
                await keys.release([claims[entry] for entry, _ in refused if entry in claims])
                settled.answers += refused
            await jobs.add_many([entry.job for entry in new])
            settled.new = new
        return settled

    @staticmethod
    async def _replays(
        keys: IdempotencyKeys, jobs: JobRepository, held: list[Entry]
    ) -> list[tuple[Entry, Outcome]]:
        """Answers for entries whose key another job holds: that job, or why not."""
        holders = await keys.holders([entry.pair for entry in held if entry.pair is not None])
        answers: list[tuple[Entry, Outcome]] = []
        wanted = {}
        for entry in held:
            holder = holders.get(entry.pair) if entry.pair is not None else None
            if holder is None:
                answers.append((entry, original_gone()))
            elif holder.request_hash != entry.request_hash:
                answers.append((entry, key_reused()))
            else:
                wanted[entry] = holder.job_id
        originals = await jobs.get_many(list(wanted.values()))
        for entry, job_id in wanted.items():
            original = originals.get(job_id)
            if original is None or original.owner != entry.job.owner:
                answers.append((entry, original_gone()))
            else:
                answers.append((entry, (original, True)))
        return answers

    async def _statement(self, batch: list[Entry]) -> Settled:
        """A batch without Idempotency-Keys: its jobs and the quota check in one statement,
        its own transaction (no BEGIN and COMMIT round trips)."""
        active = await JobRepository.direct(self.statements).insert_capped(
            [entry.job for entry in batch], self.max_active
        )
        if self.max_active is None:
            return Settled(new=batch)
        # The statement let in the same entries as this decides, from the same counts.
        new, refused = self._within_quota(batch, active, self.max_active)
        return Settled(new=new, answers=refused)

    @staticmethod
    def _within_quota(
        new: list[Entry], counts: dict[str, int], limit: int
    ) -> tuple[list[Entry], list[tuple[Entry, Outcome]]]:
        """The entries that fit in their subject's limit of active jobs (`counts`: each one's
        active jobs before them), and 429s for the rest."""
        active = dict(counts)
        accepted: list[Entry] = []
        refused: list[tuple[Entry, Outcome]] = []
        for entry in new:
            owner = entry.job.owner
            count = active.get(owner, 0)
            if count >= limit:
                refused.append((entry, over_quota(count)))
            else:
                active[owner] = count + 1
                accepted.append(entry)
        return accepted, refused
