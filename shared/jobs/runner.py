"""Runs one attempt of a job. The quick lane (API process) and the heavy lane (Celery child)
both call this; they differ only in who calls it.

An attempt: claim the job (queued -> running, attempts + 1), run the handler while a pulse loop
writes coalesced progress and reads the cancel flag, then record the outcome with a
compare-and-set fenced by the attempt number, so a stale attempt can never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from shared.db.engine import SessionFactory
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.errors import JobCancelled, PermanentError, StaleAttempt
from shared.events import EventBus, JobEvent
from shared.jobs.context import JobContext, ProgressUpdate
from shared.jobs.registry import AnyKind, Registry
from shared.jobs.schemas import Progress
from shared.jobs.service import utcnow
from shared.jobs.states import ErrorType, JobStatus
from shared.settings import Settings

log = logging.getLogger("jobq.runner")

MAX_ERROR_MESSAGE = 2000
# How long an attempt keeps trying to record its outcome while Postgres is unreachable.
RECORD_RETRY_SECONDS = 60.0

T = TypeVar("T")


class Outcome(StrEnum):
    SKIPPED = "skipped"  # not claimable: already taken, cancelled or finished
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    STALE = "stale"  # the attempt lost ownership of the job before it finished


@dataclass(frozen=True)
class RunReport:
    job_id: uuid.UUID
    outcome: Outcome
    attempt: int = 0
    # A synchronous handler that ignored cancellation is still running in its thread; the
    # caller may recycle the process to reclaim it.
    abandoned_thread: bool = False


class _Stop(StrEnum):
    CANCEL = "cancel"
    TIMEOUT = "timeout"


def _error(kind: ErrorType, message: str) -> dict[str, Any]:
    return {"type": kind.value, "message": message[:MAX_ERROR_MESSAGE]}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Runner:
    def __init__(
        self,
        sessions: SessionFactory,
        registry: Registry,
        settings: Settings,
        events: EventBus | None = None,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.settings = settings
        self.events = events

    async def _move(self, operation: Callable[[JobRepository], Awaitable[Job]]) -> Job:
        """A status change: written (see `_write`), then announced to watchers."""
        job = await self._write(operation)
        if self.events is not None:
            await self.events.publish(job.owner, JobEvent.of(job, "status"))
        return job

    async def _write(self, operation: Callable[[JobRepository], Awaitable[T]]) -> T:
        """One transaction; retried while the database is unreachable, for a bounded time."""
        delay = 0.25
        deadline = asyncio.get_running_loop().time() + RECORD_RETRY_SECONDS
        while True:
            try:
                async with self.sessions.begin() as session:
                    return await operation(JobRepository(session))
            except (OSError, OperationalError, InterfaceError) as exc:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)

    async def run(self, job_id: uuid.UUID) -> RunReport:
        try:
            job = await self._move(lambda jobs: jobs.claim(job_id, utcnow(), self._lease_until()))
        except StaleAttempt:
            log.info("job %s not claimable (already taken, cancelled or finished)", job_id)
            return RunReport(job_id, Outcome.SKIPPED)

        kind = self.registry.get(job.kind)
        if kind is None:
            return await self._finish_failed(job, f"unknown job kind {job.kind!r} in this process")
        try:
            params = kind.params.model_validate(job.params)
        except ValidationError as exc:
            return await self._finish_failed(job, f"stored params no longer valid: {exc}")

        ctx = JobContext(job.id, job.kind, job.attempts, job.max_attempts)
        task = asyncio.ensure_future(self._call(kind, ctx, params))
        try:
            stop = await self._supervise(job, ctx, task)
        except asyncio.CancelledError:
            # This process is shutting down: give the job back rather than leave it to its lease.
            task.cancel()
            await asyncio.shield(self._hand_back(job))
            raise
        if stop is None and not task.done():
            # The attempt lost ownership (another attempt or a cancel finished it).
            task.cancel()
            return RunReport(job.id, Outcome.STALE, job.attempts, self._abandoned(kind, task))
        return await self._record(job, kind, ctx, task, stop)

    def _lease_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.settings.lease_seconds)

    async def _hand_back(self, job: Job) -> None:
        error = _error(ErrorType.WORKER_LOST, "handed back: its process shut down mid-run")
        now = utcnow()
        try:
            if job.attempts < job.max_attempts:
                await self._move(
                    lambda jobs: jobs.requeue(job.id, job.attempts, run_at=now, error=error)
                )
            else:
                await self._move(
                    lambda jobs: jobs.finish(
                        job.id, job.attempts, JobStatus.FAILED, now, error=error
                    )
                )
            log.warning("job %s attempt %d handed back at shutdown", job.id, job.attempts)
        except Exception as exc:  # its lease will expire and the dispatcher rescues it
            log.warning("job %s could not be handed back (%s)", job.id, exc)

    @staticmethod
    async def _call(kind: AnyKind, ctx: JobContext, params: BaseModel) -> Any:
        if inspect.iscoroutinefunction(kind.handler):
            return await kind.handler(ctx, params)
        # A sync handler runs in a thread so this loop keeps recording its progress.
        return await asyncio.to_thread(kind.handler, ctx, params)

    async def _supervise(
        self, job: Job, ctx: JobContext, task: asyncio.Future[Any]
    ) -> _Stop | None:
        """The pulse loop: flush progress, watch the cancel flag and the deadline.

        Returns why the handler was stopped (None if it finished by itself, or if the attempt
        lost ownership while the handler was still running).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + job.timeout_seconds
        grace = self.settings.cancel_grace_seconds
        next_cancel_check = started + self.settings.cancel_poll_interval
        renew_every = self.settings.lease_seconds / 3
        next_renewal = started + renew_every
        stop: _Stop | None = None
        stop_at = 0.0
        while not task.done():
            now = loop.time()
            wake = min(
                now + self.settings.progress_interval, deadline if stop is None else stop_at + grace
            )
            await asyncio.wait({task}, timeout=max(0.0, wake - now))
            if task.done():
                break
            now = loop.time()
            update = ctx.take_progress()
            renew = now >= next_renewal
            if update is not None or renew or now >= next_cancel_check:
                next_cancel_check = now + self.settings.cancel_poll_interval
                try:
                    async with self.sessions.begin() as session:
                        pulse = await JobRepository(session).save_progress(
                            job.id,
                            job.attempts,
                            update.as_json() if update else None,
                            self._lease_until() if renew else None,
                        )
                    if renew:
                        next_renewal = now + renew_every
                except (OSError, OperationalError, InterfaceError) as exc:
                    # Progress is best effort; the outcome is not. Keep the figures for later.
                    log.warning("job %s: could not record progress (%s)", job.id, exc)
                    if update is not None:
                        ctx.restore_progress(update)
                    continue
                if pulse is None:
                    return None
                if update is not None and self.events is not None:
                    await self.events.publish(
                        job.owner, self._progress_event(job, update, pulse.seq)
                    )
                if pulse.cancel_requested and stop is None:
                    stop, stop_at = _Stop.CANCEL, now
                    ctx.mark_cancelled()
            if stop is None and now >= deadline:
                stop, stop_at = _Stop.TIMEOUT, now
                ctx.mark_cancelled()
            if stop is not None and now >= stop_at + grace:
                log.warning("job %s ignored its %s for %.1fs; stopping it", job.id, stop, grace)
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
                break
        return stop

    @staticmethod
    def _progress_event(job: Job, update: ProgressUpdate, seq: int) -> JobEvent:
        return JobEvent(
            type="progress",
            job_id=job.id,
            seq=seq,
            status=JobStatus.RUNNING,
            progress=Progress.model_validate(update.as_json()),
            ts=utcnow(),
        )

    @staticmethod
    def _abandoned(kind: AnyKind, task: asyncio.Future[Any]) -> bool:
        return task.cancelled() and not inspect.iscoroutinefunction(kind.handler)

    async def _record(
        self,
        job: Job,
        kind: AnyKind,
        ctx: JobContext,
        task: asyncio.Future[Any],
        stop: _Stop | None,
    ) -> RunReport:
        update = ctx.take_progress()
        progress = update.as_json() if update else None
        attempt = job.attempts
        abandoned = self._abandoned(kind, task)
        exc = None if task.cancelled() else task.exception()
        now = utcnow()

        target = JobStatus.FAILED
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        outcome = Outcome.FAILED
        if task.cancelled() or isinstance(exc, JobCancelled):
            if stop is _Stop.TIMEOUT:
                error = _error(
                    ErrorType.TIMEOUT, f"exceeded its timeout of {job.timeout_seconds:g}s"
                )
                outcome = Outcome.TIMED_OUT
            else:
                target, outcome = JobStatus.CANCELLED, Outcome.CANCELLED
                error = _error(ErrorType.CANCELLED, "cancelled while running")
        elif exc is None:
            try:
                result = kind.result.model_validate(task.result()).model_dump(mode="json")
                target, outcome = JobStatus.SUCCEEDED, Outcome.SUCCEEDED
            except ValidationError as invalid:
                error = _error(ErrorType.ERROR, f"handler returned an invalid result: {invalid}")
        elif isinstance(exc, PermanentError):
            error = _error(ErrorType.ERROR, _describe(exc))
        else:
            error = _error(ErrorType.ERROR, _describe(exc))
            if attempt < job.max_attempts:
                delay = kind.retry.delay(attempt)
                log.info(
                    "job %s attempt %d failed (%s); retrying in %.1fs",
                    job.id,
                    attempt,
                    error["message"],
                    delay,
                )
                try:
                    run_at = now + timedelta(seconds=delay)
                    await self._move(
                        lambda jobs: jobs.requeue(
                            job.id, attempt, run_at=run_at, error=error, progress=progress
                        )
                    )
                except StaleAttempt:
                    return RunReport(job.id, Outcome.STALE, attempt, abandoned)
                return RunReport(job.id, Outcome.RETRYING, attempt, abandoned)

        try:
            await self._move(
                lambda jobs: jobs.finish(
                    job.id, attempt, target, now, result=result, error=error, progress=progress
                )
            )
        except StaleAttempt:
            return RunReport(job.id, Outcome.STALE, attempt, abandoned)
        log.info("job %s attempt %d: %s", job.id, attempt, outcome)
        return RunReport(job.id, outcome, attempt, abandoned)

    async def _finish_failed(self, job: Job, message: str) -> RunReport:
        log.error("job %s: %s", job.id, message)
        try:
            error = _error(ErrorType.ERROR, message)
            await self._move(
                lambda jobs: jobs.finish(
                    job.id, job.attempts, JobStatus.FAILED, utcnow(), error=error
                )
            )
        except StaleAttempt:
            return RunReport(job.id, Outcome.STALE, job.attempts)
        return RunReport(job.id, Outcome.FAILED, job.attempts)
