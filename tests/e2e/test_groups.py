"""Jobs handed over together travel as one Celery message and run in turn in one worker
process; a long one among them sends the rest back to the queue for any idle process."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from shared.broker import Publisher, create_celery
from shared.db.engine import create_engine, create_session_factory
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.jobs.registry import load_registry
from shared.jobs.schemas import JobSubmission
from shared.jobs.service import JobService, Principal
from shared.settings import Settings
from tests.conftest import Servers, on_each_broker
from tests.e2e.processes import start_worker
from tests.e2e.stack import finished_jobs

pytestmark = [pytest.mark.e2e, on_each_broker]

ECHO: dict[str, Any] = {"kind": "echo", "params": {"message": "hi"}}
LONG: dict[str, Any] = {"kind": "sleep", "params": {"seconds": 1.5, "steps": 1}}


async def _send_group(
    settings: Settings, subject: str, submissions: list[dict[str, Any]]
) -> list[uuid.UUID]:
    """Queue the jobs and send them as one run-jobs message."""
    engine = create_engine(settings)
    publisher = Publisher(create_celery(settings), settings.cancel_grace_seconds, group=8)
    try:
        sessions = create_session_factory(engine)
        jobs = []
        async with sessions.begin() as session:
            service = JobService(JobRepository(session), load_registry())
            for submission in submissions:
                jobs.append(await service.submit(Principal(subject), JobSubmission(**submission)))
        assert len(publisher.outgoing(jobs)) == 1
        assert publisher.send_many(jobs) == []
        return [job.id for job in jobs]
    finally:
        await publisher.aclose()
        publisher.celery.close()
        await engine.dispose()


def _run(
    settings: Settings, servers: Servers, name: str, concurrency: int, ids: list[uuid.UUID]
) -> list[Job]:
    worker = start_worker(settings, servers.tmp / "logs", name=name, concurrency=concurrency)
    try:
        return asyncio.run(finished_jobs(settings, ids))
    finally:
        worker.stop()


def test_a_group_runs_in_turn_in_one_message(
    own_broker: Settings, servers: Servers, subject: str
) -> None:
    ids = asyncio.run(_send_group(own_broker, subject, [ECHO] * 4))
    jobs = _run(own_broker, servers, "group", 1, ids)
    assert [(job.status, job.attempts) for job in jobs] == [("succeeded", 1)] * 4
    started = [job.started_at for job in jobs]
    assert started == sorted(started)  # type: ignore[type-var]


def test_a_long_job_holds_up_none_of_its_group(
    own_broker: Settings, servers: Servers, subject: str
) -> None:
    ids = asyncio.run(_send_group(own_broker, subject, [LONG, ECHO, ECHO, ECHO]))
    long, *rest = _run(own_broker, servers, "group-long", 2, ids)
    assert [(job.status, job.attempts) for job in [long, *rest]] == [("succeeded", 1)] * 4
    # The other worker process ran them while the long one slept.
    assert long.finished_at is not None
    assert all(job.finished_at is not None and job.finished_at < long.finished_at for job in rest)
