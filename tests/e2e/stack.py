"""A jobq stack of its own for fault tests: its own Redis (so it can be killed), its API
processes and workers, short leases, and a check of the invariants that must survive faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text

from cli.servers import EmbeddedRedis, free_port
from shared.db.engine import SessionFactory, create_engine, create_session_factory
from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.jobs.states import JobStatus, can_transition, is_terminal
from shared.settings import Settings
from shared.tokens import issue_token
from tests.e2e.processes import Managed, start_api, start_worker

# Installed once per test database: a log of every status change, to check the state machine.
TRANSITION_LOG = (
    """CREATE TABLE IF NOT EXISTS test_transitions (
        job_id uuid, old_status text, new_status text, old_attempts int, new_attempts int,
        at timestamptz DEFAULT clock_timestamp())""",
    """CREATE OR REPLACE FUNCTION test_log_transition() RETURNS trigger AS $$
    BEGIN
        INSERT INTO test_transitions (job_id, old_status, new_status, old_attempts, new_attempts)
        VALUES (NEW.id, OLD.status, NEW.status, OLD.attempts, NEW.attempts);
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS test_log_transition ON jobs",
    """CREATE TRIGGER test_log_transition AFTER UPDATE ON jobs
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION test_log_transition()""",
)


async def install_transition_log(sessions: SessionFactory) -> None:
    async with sessions.begin() as session:
        for statement in TRANSITION_LOG:
            await session.execute(text(statement))


@dataclass
class Stack:
    settings: Settings
    logs: Path
    subject: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:6]}")
    redis: EmbeddedRedis | None = None
    apis: list[Managed] = field(default_factory=list)
    workers: list[Managed] = field(default_factory=list)

    @property
    def token(self) -> str:
        return issue_token(self.settings, self.subject)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api_url(self, index: int = -1) -> str:
        api = self.apis[index]
        return f"http://127.0.0.1:{api.command[api.command.index('--port') + 1]}"

    def start_api(self, settings: Settings | None = None, port: int | None = None) -> Managed:
        api = start_api(settings or self.settings, port or free_port(), self.logs)
        self.apis.append(api)
        return api

    def start_worker(self, concurrency: int = 2) -> Managed:
        name = f"fault{len(self.workers)}"
        worker = start_worker(self.settings, self.logs, name=name, concurrency=concurrency)
        self.workers.append(worker)
        return worker

    @staticmethod
    def kill(process: Managed, *, group: bool = True) -> None:
        """SIGKILL, with no chance to clean up: the process (and its children) just vanish."""
        assert process.process is not None
        pid = process.process.pid
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        process.process.wait(10)
        process.process = None

    @staticmethod
    def pool_children(worker: Managed) -> list[psutil.Process]:
        assert worker.process is not None
        children: list[psutil.Process] = psutil.Process(worker.process.pid).children()
        return children

    def stop(self) -> None:
        for process in (*self.workers, *self.apis):
            process.stop()
        if self.redis is not None:
            self.redis.stop()


async def submit(url: str, headers: dict[str, str], kind: str, params: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        response = await client.post("/jobs", json={"kind": kind, "params": params})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def statuses(sessions: SessionFactory, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT id::text, status, attempts FROM jobs WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(job_id) for job_id in ids]},
        )
        return {row[0]: (row[1], row[2]) for row in rows}


async def wait_until(
    sessions: SessionFactory, ids: Iterable[str], predicate: Any, limit: float
) -> dict[str, tuple[str, int]]:
    wanted = list(ids)
    deadline = time.monotonic() + limit
    while True:
        found = await statuses(sessions, wanted)
        if predicate(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; jobs are {found}")
        await asyncio.sleep(0.2)


def all_terminal(found: dict[str, tuple[str, int]]) -> bool:
    return all(is_terminal(JobStatus(status)) for status, _ in found.values())


async def finished_jobs(
    settings: Settings, ids: Sequence[uuid.UUID], limit: float = 30
) -> list[Job]:
    """The jobs, in the order of `ids`, once every one of them has ended."""
    engine = create_engine(settings)
    try:
        sessions = create_session_factory(engine)
        await wait_until(sessions, [str(job_id) for job_id in ids], all_terminal, limit)
        async with sessions() as session:
            found = await JobRepository(session).get_many(ids)
        return [found[job_id] for job_id in ids]
    finally:
        await engine.dispose()


async def check_invariants(sessions: SessionFactory, ids: Iterable[str]) -> None:
    """Every accepted job has exactly one row and ended; every transition was a legal one;
    attempts never went down, and each new run was a new attempt."""
    accepted = {uuid.UUID(job_id) for job_id in ids}
    async with sessions() as session:
        rows = (
            await session.execute(
                text("SELECT id, status FROM jobs WHERE id = ANY(:ids)"), {"ids": list(accepted)}
            )
        ).all()
        log = (
            await session.execute(
                text(
                    "SELECT job_id, old_status, new_status, old_attempts, new_attempts"
                    " FROM test_transitions WHERE job_id = ANY(:ids) ORDER BY at"
                ),
                {"ids": list(accepted)},
            )
        ).all()
    assert len(rows) == len(accepted) and {row[0] for row in rows} == accepted
    assert all(is_terminal(JobStatus(row[1])) for row in rows), rows
    for job_id, old, new, old_attempts, new_attempts in log:
        assert can_transition(JobStatus(old), JobStatus(new)), (job_id, old, new)
        assert new_attempts >= old_attempts, (job_id, old_attempts, new_attempts)
        if new == JobStatus.RUNNING:
            assert new_attempts == old_attempts + 1, (job_id, old_attempts, new_attempts)
