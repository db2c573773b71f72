"""Runs one attempt of a job. The quick lane (API process) and the heavy lane (Celery child)
both call this; they differ only in who calls it.

An attempt: claim the job (queued -> running, attempts + 1, with a lease), run the handler while
its pulse writes progress, renews the lease and reads the cancel flag, then record the outcome
with a compare-and-set fenced by the attempt number, so a stale attempt never overwrites a newer
one. Each status change is announced to watchers once written, in the background and in order.

A group (several jobs in one Celery message) runs in turn in one process, its events going
out meanwhile; each job's end claims the next in the same statement. See `run_many`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from shared.db.engine import SessionFactory, Statements, is_transient, single_statements
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.errors import StaleAttempt
from shared.events import EventBus
from shared.jobs.context import JobContext
from shared.jobs.outcome import Decision, Outcome, decide, error
from shared.jobs.pulse import Heart, LostOwnership, lease_until
from shared.jobs.registry import AnyKind, Registry
from shared.jobs.service import utcnow
from shared.jobs.states import ErrorType, JobStatus
from shared.logs import bound
from shared.settings import Settings

log = logging.getLogger("jobq.runner")

# How long an attempt keeps trying to record its outcome while Postgres is unreachable.
RECORD_RETRY_SECONDS = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class RunReport:
    job_id: uuid.UUID
    outcome: Outcome
    attempt: int = 0
    # A synchronous handler that ignored cancellation is still running in its thread; the
    # caller may recycle the process to reclaim it.
    abandoned_thread: bool = False


@dataclass
class Handoff:
    """A group's next job, claimed by the statement that ends the job before it: a round trip
    to Postgres and one to Redis fewer a job. Until that statement goes, the group may still
    withdraw the job (to hand it back with the rest)."""

    job_id: uuid.UUID
    state: Literal["open", "withdrawn", "sent"] = "open"
    returned: bool = False  # the statement came back; `job` is its claim
    job: Job | None = None  # None: not claimable (taken, cancelled or finished), or started

    def send(self) -> bool:
        """The ending statement takes the claim along, unless the group withdrew it."""
        if self.state != "open":
            return False
        self.state = "sent"
        return True

    def withdraw(self) -> bool:
        """False if the ending statement has the claim already (it may be committed)."""
        if self.state == "sent":
            return False
        self.state = "withdrawn"
        return True

    def take(self) -> Job | None:
        job, self.job = self.job, None
        return job


class Runner:
    def __init__(
        self,
        sessions: SessionFactory,
        registry: Registry,
        settings: Settings,
        events: EventBus | None = None,
    ) -> None:
        self.sessions = sessions
        # Claims, progress and most ends are one UPDATE each (see `_write`).
        self.single = single_statements(sessions)
        self.statements = Statements(sessions.kw["bind"])
        self.registry = registry
        self.settings = settings
        self.events = events
        # Each attempt's latest status event, while it is being published.
        self._announcing: dict[tuple[uuid.UUID, int], asyncio.Future[None]] = {}

    async def run_many(
        self,
        job_ids: Sequence[uuid.UUID],
        hand_back: Callable[[Sequence[Job]], Awaitable[list[uuid.UUID]]],
    ) -> list[RunReport]:
        """Run a group's jobs in turn; their events are all out when this returns.

        A job still running after `dispatch_group_slice` seconds, one that leaves a thread
        behind, or one whose attempt raises, sends the jobs after it to `hand_back` (back to
        the queue, for any process) so that it holds none of them up. Those `hand_back` could
        not send wait for the dispatcher, which sends handed-over jobs left unclaimed again.
        Each job's handler starts once the earlier jobs' events are out. A job's end claims
        the next job (see `Handoff`); the slice then no longer sends the rest on, as the job
        is ending.
        """
        job_ids = list(dict.fromkeys(job_ids))  # a job once, whatever the message says
        reports: list[RunReport] = []
        claimed: Handoff | None = None
        then: Handoff | None = None
        try:
            for index, job_id in enumerate(job_ids):
                rest = job_ids[index + 1 :]
                then = Handoff(rest[0]) if rest else None
                attempt = asyncio.ensure_future(
                    self.run(job_id, settle=False, claimed=claimed, then=then)
                )
                try:
                    if then is not None:
                        done, _ = await asyncio.wait(
                            {attempt}, timeout=self.settings.dispatch_group_slice
                        )
                        if not done and then.withdraw():
                            await self._give_back(rest, hand_back)
                            rest = []
                    report = await attempt
                except asyncio.CancelledError:
                    attempt.cancel()
                    await asyncio.wait({attempt})
                    raise
                except Exception:
                    if rest:
                        await self._give_back(rest, hand_back)
                    raise
                reports.append(report)
                if report.abandoned_thread and rest and then is not None and then.withdraw():
                    await self._give_back(rest, hand_back)
                    rest = []
                if not rest:
                    break
                claimed = then
        finally:
            # Claimed by an end but not run (the group raised or was cancelled).
            for handoff in (claimed, then):
                if handoff is not None and (unrun := handoff.take()) is not None:
                    await asyncio.shield(self._hand_back(unrun))
            if self._announcing:
                await asyncio.wait(set(self._announcing.values()))
        return reports

    async def _give_back(
        self,
        job_ids: Sequence[uuid.UUID],
        hand_back: Callable[[Sequence[Job]], Awaitable[list[uuid.UUID]]],
    ) -> None:
        """Send a group's unstarted jobs on without it. Never raises."""
        try:
            async with self.single.begin() as session:
                found = await JobRepository(session).get_many(job_ids)
            # Still waiting as handed over: not run meanwhile by a duplicate message, nor
            # back from an attempt to wait out a retry's back-off.
            waiting = [
                job
                for job_id in job_ids
                if (job := found.get(job_id)) is not None
                and job.status == JobStatus.QUEUED
                and job.dispatched_at is not None
            ]
            failed = await hand_back(waiting) if waiting else []
        except Exception as exc:
            log.warning("could not hand back %d job(s) of a group (%s)", len(job_ids), exc)
            return
        if failed:
            log.warning("could not hand back %d job(s) of a group", len(failed))
        else:
            log.info("%d job(s) of the group handed back, to run elsewhere", len(waiting))

    async def run(
        self,
        job_id: uuid.UUID,
        *,
        settle: bool = True,
        claimed: Handoff | None = None,
        then: Handoff | None = None,
    ) -> RunReport:
        """One attempt of the job. `settle`: return once its events are out (else they may
        still be going: see `run_many`). `claimed`: the job as the end before it claimed it,
        if it did; `then`: the job its end is to claim."""
        with bound(job_id=str(job_id)):
            try:
                if claimed is not None and claimed.returned:
                    job = claimed.take()
                    if job is None:
                        raise StaleAttempt(f"job {job_id}: expected queued")
                else:
                    job = await self._write(
                        lambda jobs: jobs.claim(job_id, utcnow(), lease_until(self.settings)),
                        single=True,
                    )
                    # The running event goes out while the handler starts: nothing waits for
                    # its round trip but the attempt's next event, which must follow it.
                    if self.events is not None:
                        self._announce(self.events, job)
            except StaleAttempt:
                log.info("job %s not claimable (already taken, cancelled or finished)", job_id)
                return RunReport(job_id, Outcome.SKIPPED)
            # Every line logged for this attempt (the handler's too) names it and its request.
            with bound(kind=job.kind, attempt=job.attempts, request_id=job.request_id):
                log.info("job %s attempt %d started", job.id, job.attempts)
                try:
                    if not settle:
                        # In a group: a handler that blocked this loop would hold back the
                        # events of the jobs before it, which are out by now or nearly.
                        try:
                            await self._others_announced(job)
                        except asyncio.CancelledError:
                            await asyncio.shield(self._hand_back(job))
                            raise
                    return await self._attempt(job, then)
                finally:
                    if settle:
                        await self._announced(job)

    def _announce(self, events: EventBus, *jobs: Job) -> None:
        """Publish the attempts' status events in the background (in one round trip), each
        after its attempt's earlier ones."""
        keys = [(job.id, job.attempts) for job in jobs]
        earlier = {future for key in keys if (future := self._announcing.get(key)) is not None}

        async def announce() -> None:
            if earlier:
                await asyncio.wait(earlier)
            await events.moved(*jobs)

        announcing = asyncio.ensure_future(announce())
        for key in keys:
            self._announcing[key] = announcing

        def done(future: asyncio.Future[None]) -> None:
            for key in keys:
                if self._announcing.get(key) is future:
                    del self._announcing[key]
            if not future.cancelled() and (exc := future.exception()) is not None:
                moves = ", ".join(f"job {job.id} {job.status}" for job in jobs)
                log.warning("status event(s) failed (%s): %r", moves, exc)

        announcing.add_done_callback(done)

    async def _others_announced(self, job: Job) -> None:
        """Wait for every other attempt's events in flight in this runner to be out."""
        others = {f for key, f in self._announcing.items() if key != (job.id, job.attempts)}
        if others:
            await asyncio.wait(others)

    async def _announced(self, job: Job) -> None:
        """Wait for the attempt's status events to be out, if they are not yet. Never raises
        for the publish: each waiter waits on its own, so one that is cancelled leaves the
        entry for the others."""
        announcing = self._announcing.get((job.id, job.attempts))
        if announcing is not None:
            await asyncio.wait({announcing})

    async def _attempt(self, job: Job, then: Handoff | None = None) -> RunReport:
        kind = self.registry.get(job.kind)
        if kind is None:
            return await self._fail(job, f"unknown job kind {job.kind!r} in this process")
        try:
            params = kind.params.model_validate(job.params)
        except ValidationError as exc:
            return await self._fail(job, f"stored params no longer valid: {exc}")

        ctx = JobContext(job.id, job.kind, job.attempts, job.max_attempts)
        task = asyncio.ensure_future(self._call(kind, ctx, params))
        try:
            heart = Heart(
                self.single, self.settings, self.events, job, ctx, lambda: self._announced(job)
            )
            stop = await heart.beat_until_done(task)
        except LostOwnership:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
            return RunReport(job.id, Outcome.STALE, job.attempts, self._abandoned(kind, task))
        except asyncio.CancelledError:
            # This process is shutting down: give the job back rather than leave it to its lease.
            task.cancel()
            await asyncio.shield(self._hand_back(job))
            raise
        except BaseException:
            task.cancel()
            raise
        decision = decide(
            task,
            stop,
            result_model=kind.result,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            timeout=job.timeout_seconds,
            retry_delay=kind.retry.delay(job.attempts),
        )
        abandoned = self._abandoned(kind, task)
        # A thread left behind sends the rest of the group on, the next job with it.
        return await self._record(job, ctx, decision, abandoned, None if abandoned else then)

    @staticmethod
    async def _call(kind: AnyKind, ctx: JobContext, params: BaseModel) -> Any:
        if inspect.iscoroutinefunction(kind.handler):
            return await kind.handler(ctx, params)
        # A sync handler runs in a thread so this loop keeps recording its progress.
        return await asyncio.to_thread(kind.handler, ctx, params)

    @staticmethod
    def _abandoned(kind: AnyKind, task: asyncio.Future[Any]) -> bool:
        return not inspect.iscoroutinefunction(kind.handler) and (
            task.cancelled() or not task.done()
        )

    async def _record(
        self,
        job: Job,
        ctx: JobContext,
        decision: Decision,
        abandoned: bool,
        then: Handoff | None = None,
    ) -> RunReport:
        update = ctx.take_progress()
        progress = update.as_json() if update else None
        attempt, outcome = job.attempts, decision.outcome
        try:
            if decision.target == JobStatus.QUEUED:
                log.info(
                    "job %s attempt %d failed; retry in %.1fs", job.id, attempt, decision.retry_in
                )
                outcome = await self._retry(job, decision, progress)
            else:
                await self._finish(
                    job,
                    decision.target,
                    result=decision.result,
                    error=decision.error,
                    progress=progress,
                    then=then,
                )
        except StaleAttempt:
            return RunReport(job.id, Outcome.STALE, attempt, abandoned)
        log.info("job %s attempt %d: %s", job.id, attempt, outcome)
        return RunReport(job.id, outcome, attempt, abandoned)

    async def _retry(
        self, job: Job, decision: Decision, progress: dict[str, Any] | None
    ) -> Outcome:
        run_at = utcnow() + timedelta(seconds=decision.retry_in)
        failure = decision.error or {}
        moved = await self._move(
            lambda jobs: jobs.requeue(
                job.id, job.attempts, run_at=run_at, error=failure, progress=progress
            )
        )
        # A cancel that came meanwhile ends the job instead.
        return Outcome.RETRYING if moved.status == JobStatus.QUEUED else Outcome.CANCELLED

    async def _finish(
        self,
        job: Job,
        target: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
        then: Handoff | None = None,
    ) -> Job:
        now = utcnow()
        if then is not None and not job.webhook_url and then.send():
            return await self._finish_and_claim(job, target, now, result, error, progress, then)
        return await self._move(
            lambda jobs: jobs.finish(
                job.id, job.attempts, target, now, result=result, error=error, progress=progress
            ),
            # With a webhook, the delivery is written beside the end: two statements.
            single=not job.webhook_url,
        )

    async def _finish_and_claim(
        self,
        job: Job,
        target: JobStatus,
        now: datetime,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        progress: dict[str, Any] | None,
        then: Handoff,
    ) -> Job:
        """`_finish`, claiming `then`'s job in the same statement; both events in one trip."""
        until = lease_until(self.settings)
        finished, claimed = await self._write(
            lambda jobs: jobs.finish_and_claim(
                job.id,
                job.attempts,
                target,
                now,
                result=result,
                error=error,
                progress=progress,
                next_id=then.job_id,
                lease_until=until,
            ),
            single=True,
        )
        then.returned, then.job = True, claimed
        moved = [found for found in (finished, claimed) if found is not None]
        if self.events is not None and moved:
            self._announce(self.events, *moved)
        if finished is None:
            raise StaleAttempt(f"job {job.id}: expected running (attempt {job.attempts})")
        return finished

    async def _fail(self, job: Job, message: str) -> RunReport:
        log.error("job %s: %s", job.id, message)
        try:
            await self._finish(job, JobStatus.FAILED, error=error(ErrorType.ERROR, message))
        except StaleAttempt:
            return RunReport(job.id, Outcome.STALE, job.attempts)
        return RunReport(job.id, Outcome.FAILED, job.attempts)

    async def _hand_back(self, job: Job) -> None:
        lost = error(ErrorType.WORKER_LOST, "handed back: its process shut down mid-run")
        try:
            if job.attempts < job.max_attempts:
                await self._move(
                    lambda jobs: jobs.requeue(job.id, job.attempts, run_at=utcnow(), error=lost)
                )
            else:
                await self._finish(job, JobStatus.FAILED, error=lost)
            log.warning("job %s attempt %d handed back at shutdown", job.id, job.attempts)
        except Exception as exc:  # its lease runs out and the dispatcher rescues it
            log.warning("job %s could not be handed back (%s)", job.id, exc)

    async def _move(
        self, operation: Callable[[JobRepository], Awaitable[Job]], *, single: bool = False
    ) -> Job:
        """A status change: written (see `_write`), then announced to watchers, after the
        attempt's earlier events."""
        job = await self._write(operation, single=single)
        if self.events is not None:
            self._announce(self.events, job)
        return job

    async def _write(
        self, operation: Callable[[JobRepository], Awaitable[T]], *, single: bool = False
    ) -> T:
        """One transaction; retried while the database is unreachable, for a bounded time.

        `single`: the operation is one plain statement, run without a session, BEGIN or
        COMMIT around it (`JobRepository.direct`).
        """
        delay = 0.25
        deadline = asyncio.get_running_loop().time() + RECORD_RETRY_SECONDS
        while True:
            try:
                if single:
                    return await operation(JobRepository.direct(self.statements))
                async with self.sessions.begin() as session:
                    return await operation(JobRepository(session))
            except Exception as exc:
                if not is_transient(exc) or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)
