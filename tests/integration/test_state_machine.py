"""A stateful property test of the job state machine and the repository on real Postgres.

Hypothesis drives a few jobs through submit, claim (and duplicate deliveries), stale and
current finishes, retries, crashes rescued through expired leases, cancels and timeouts, and
checks each step against a model: terminal states absorb, a job has at most one live attempt,
attempts never go down, and a stale attempt never changes anything.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from shared.db.engine import create_engine, create_session_factory
from shared.db.repository import JobRepository
from shared.errors import Conflict, StaleAttempt
from shared.jobs.dispatcher import Dispatcher
from shared.jobs.registry import load_registry
from shared.jobs.schemas import JobSubmission
from shared.jobs.service import JobService, Principal
from shared.jobs.states import JobStatus, is_terminal
from shared.settings import Settings

T = TypeVar("T")
MAX_ATTEMPTS = 3


@dataclass
class Model:
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    cancel_requested: bool = False


def machine_for(database_url: str) -> type[RuleBasedStateMachine]:
    class JobMachine(RuleBasedStateMachine):
        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.engine = create_engine(Settings(database_url=database_url), pool_size=2)
            self.sessions = create_session_factory(self.engine)
            self.registry = load_registry()
            self.owner = f"sm-{uuid.uuid4().hex[:8]}"
            self.models: dict[uuid.UUID, Model] = {}
            self.seen_attempts: dict[uuid.UUID, int] = {}

        def teardown(self) -> None:
            self.loop.run_until_complete(self.engine.dispose())
            self.loop.close()

        def run(self, coro: Awaitable[T]) -> T:
            return self.loop.run_until_complete(coro)

        async def _in_transaction(self, action: Any) -> Any:
            async with self.sessions.begin() as session:
                return await action(JobRepository(session))

        def attempt(self, action: Any) -> Any:
            """Run `action(repository)`; None if it raised StaleAttempt (nothing changed)."""
            try:
                return self.run(self._in_transaction(action))
            except StaleAttempt:
                return None

        @rule(target=jobs)
        def submit(self) -> uuid.UUID:
            async def create(repository: JobRepository) -> uuid.UUID:
                service = JobService(repository, self.registry)
                submission = JobSubmission(
                    kind="sleep", params={"seconds": 1}, max_attempts=MAX_ATTEMPTS
                )
                return (await service.submit(Principal(self.owner), submission)).id

            job_id: uuid.UUID = self.run(self._in_transaction(create))
            self.models[job_id] = Model()
            return job_id

        @rule(job=jobs)
        def claim(self, job: uuid.UUID) -> None:
            """A delivery, possibly a duplicate: only a queued job is taken."""
            now = datetime.now(UTC)
            taken = self.attempt(lambda r: r.claim(job, now, now + timedelta(seconds=30)))
            model = self.models[job]
            if model.status == JobStatus.QUEUED:
                assert taken is not None
                model.status, model.attempts = JobStatus.RUNNING, model.attempts + 1
            else:
                assert taken is None

        @rule(
            job=jobs,
            outcome=st.sampled_from([JobStatus.SUCCEEDED, JobStatus.FAILED]),
            stale=st.booleans(),
        )
        def finish(self, job: uuid.UUID, outcome: JobStatus, stale: bool) -> None:
            model = self.models[job]
            attempt = model.attempts - 1 if stale else model.attempts
            now = datetime.now(UTC)
            done = self.attempt(lambda r: r.finish(job, attempt, outcome, now))
            if model.status == JobStatus.RUNNING and not stale:
                assert done is not None
                model.status = outcome
            else:
                assert done is None

        @rule(job=jobs, stale=st.booleans())
        def retry(self, job: uuid.UUID, stale: bool) -> None:
            model = self.models[job]
            if not stale and model.attempts >= MAX_ATTEMPTS:
                return  # the runner fails a job on its last attempt rather than retry it
            attempt = model.attempts - 1 if stale else model.attempts
            error = {"type": "error", "message": "boom"}
            moved = self.attempt(
                lambda r: r.requeue(job, attempt, run_at=datetime.now(UTC), error=error)
            )
            if model.status == JobStatus.RUNNING and not stale:
                assert moved is not None
                model.status = JobStatus.CANCELLED if model.cancel_requested else JobStatus.QUEUED
            else:
                assert moved is None

        @rule(job=jobs)
        def crash(self, job: uuid.UUID) -> None:
            """The attempt's worker dies; its lease runs out and the dispatcher rescues it."""
            model = self.models[job]
            rescued = self.attempt(lambda r: Dispatcher._rescue(r, job, model.attempts))
            if model.status != JobStatus.RUNNING:
                assert rescued is None
            elif model.cancel_requested:
                model.status = (
                    JobStatus.CANCELLED if model.attempts < MAX_ATTEMPTS else JobStatus.FAILED
                )
            else:
                model.status = (
                    JobStatus.QUEUED if model.attempts < MAX_ATTEMPTS else JobStatus.FAILED
                )

        @rule(job=jobs)
        def cancel(self, job: uuid.UUID) -> None:
            async def cancel(repository: JobRepository) -> None:
                await JobService(repository, self.registry).cancel(Principal(self.owner), job)

            model = self.models[job]
            try:
                self.run(self._in_transaction(cancel))
            except Conflict:
                assert is_terminal(model.status)
                return
            assert not is_terminal(model.status)
            model.cancel_requested = True
            if model.status == JobStatus.QUEUED:
                model.status = JobStatus.CANCELLED

        @invariant()
        def matches_the_model(self) -> None:
            if not self.models:
                return

            async def load() -> dict[uuid.UUID, tuple[str, int]]:
                async with self.sessions() as session:
                    repository = JobRepository(session)
                    found = {}
                    for job_id in self.models:
                        job = await repository.get(job_id)
                        assert job is not None
                        found[job_id] = (job.status, job.attempts)
                    return found

            for job_id, (status, attempts) in self.run(load()).items():
                model = self.models[job_id]
                assert (JobStatus(status), attempts) == (model.status, model.attempts)
                assert attempts >= self.seen_attempts.get(job_id, 0)
                assert attempts <= MAX_ATTEMPTS
                self.seen_attempts[job_id] = attempts

    return JobMachine


@pytest.mark.timeout(300)
def test_the_state_machine_holds_against_real_postgres(own_database: str) -> None:
    # A database of its own: no running dispatcher or worker touches these jobs.
    run_state_machine_as_test(machine_for(own_database), settings=settings_for_machine())


def settings_for_machine() -> Any:
    return hypothesis_settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
