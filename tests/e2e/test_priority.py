"""Workers take high-priority jobs before normal before low: on Redis from a queue per
priority, drained in order; on RabbitMQ from one queue ordered by message priority."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.broker import Publisher, create_celery
from shared.db.engine import create_engine, create_session_factory
from shared.db.repository import JobRepository
from shared.jobs.registry import load_registry
from shared.jobs.schemas import JobSubmission
from shared.jobs.service import JobService, Principal
from shared.settings import Settings
from tests.conftest import Servers, on_each_broker
from tests.e2e.processes import start_worker
from tests.e2e.stack import finished_jobs

pytestmark = [pytest.mark.e2e, on_each_broker]


async def _queue_jobs(settings: Settings, subject: str) -> dict[str, str]:
    engine = create_engine(settings)
    publisher = Publisher(create_celery(settings), settings.cancel_grace_seconds)
    priorities = {}
    try:
        sessions = create_session_factory(engine)
        for priority in ("low", "low", "normal", "high", "high"):
            async with sessions.begin() as session:
                job = await JobService(JobRepository(session), load_registry()).submit(
                    Principal(subject),
                    JobSubmission(
                        kind="sleep", params={"seconds": 0.2, "steps": 1}, priority=priority
                    ),
                )
            assert publisher.send_many([job]) == []  # through kombu, whichever the broker
            priorities[str(job.id)] = priority
    finally:
        publisher.celery.close()
        await engine.dispose()
    return priorities


async def _start_order(settings: Settings, ids: list[str]) -> list[str]:
    jobs = await finished_jobs(settings, [uuid.UUID(job_id) for job_id in ids])
    assert {job.status for job in jobs} == {"succeeded"}
    return [str(job.id) for job in sorted(jobs, key=lambda job: str(job.started_at))]


def test_high_priority_jobs_run_first(own_broker: Settings, servers: Servers, subject: str) -> None:
    priorities = asyncio.run(_queue_jobs(own_broker, subject))
    worker = start_worker(own_broker, servers.tmp / "logs", name="priority", concurrency=1)
    try:
        order = asyncio.run(_start_order(own_broker, list(priorities)))
    finally:
        worker.stop()
    assert [priorities[job_id] for job_id in order] == ["high", "high", "normal", "low", "low"]
