"""A dependency that is down gives 503, never 500, and /ready says which one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from cli.servers import free_port
from shared.db.engine import SessionFactory, Statements
from shared.db.repository import JobRepository
from shared.settings import Settings
from tests.conftest import auth


@pytest.fixture
async def broken_client(
    settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    dead = f"127.0.0.1:{free_port()}"
    broken = {
        "database": {"database_url": f"postgresql+asyncpg://postgres@{dead}/jobq"},
        "redis": {"redis_url": f"redis://{dead}/0"},
        # RabbitMQ as the broker, down; Redis (events) is up.
        "amqp": {"broker_url": f"amqp://guest:guest@{dead}//"},
    }[request.param]
    # Its own dispatcher sleeps, so only a healthy process's dispatcher can send a job.
    app = create_app(settings.model_copy(update={**broken, "dispatch_interval": 3600}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobq.test") as client:
            yield client


@pytest.mark.parametrize("broken_client", ["database", "redis"], indirect=True)
async def test_ready_is_503_naming_the_dependency_down(broken_client: httpx.AsyncClient) -> None:
    response = await broken_client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert sorted(name for name, state in checks.items() if state != "ok") in (
        ["database"],
        ["redis"],
    )
    assert (await broken_client.get("/health")).status_code == 200


@pytest.mark.parametrize("broken_client", ["database"], indirect=True)
async def test_submit_with_database_down_is_503(
    broken_client: httpx.AsyncClient, token: str
) -> None:
    response = await broken_client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "x"}}, headers=auth(token)
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert (await broken_client.get("/jobs", headers=auth(token))).status_code == 503


async def test_a_database_shutting_down_under_a_submission_is_503(
    client: httpx.AsyncClient, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's statement runs on asyncpg directly: its errors are asyncpg's own."""

    async def shutting_down(self: Statements, sql: str, *params: object) -> None:
        raise asyncpg.AdminShutdownError("terminating connection due to administrator command")

    monkeypatch.setattr(Statements, "rows", shutting_down)
    response = await client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "x"}}, headers=auth(token)
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"]


@pytest.mark.parametrize("broken_client", ["redis", "amqp"], indirect=True)
async def test_submit_with_broker_down_is_sent_later_by_a_dispatcher(
    broken_client: httpx.AsyncClient, token: str, sessions: SessionFactory, app: FastAPI
) -> None:
    response = await broken_client.post(
        "/jobs", json={"kind": "sleep", "params": {"seconds": 1}}, headers=auth(token)
    )
    # The row is committed, so the job is not lost: it waits in Postgres, undispatched, and a
    # dispatcher that can reach the broker (here: `app`, a healthy API process) sends it.
    assert response.status_code == 202
    # The hand-over to the broker follows the answer; once it has failed, the broker is known
    # to be down and heavy jobs are refused rather than held. Those accepted until then wait.
    accepted = [uuid.UUID(response.json()["id"])]
    for _ in range(100):
        refused = await broken_client.post(
            "/jobs", json={"kind": "sleep", "params": {"seconds": 1}}, headers=auth(token)
        )
        if refused.status_code != 202:
            break
        accepted.append(uuid.UUID(refused.json()["id"]))
        await asyncio.sleep(0.05)
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    quick = await broken_client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "x"}}, headers=auth(token)
    )
    assert quick.status_code == 202
    for _ in range(200):
        async with sessions() as session:
            jobs = await JobRepository(session).get_many(accepted)
        assert len(jobs) == len(accepted)
        # Handed back after the failed publish, then sent again by the healthy dispatcher.
        if all(job.dispatches >= 2 and job.dispatched_at for job in jobs.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("an accepted job was never dispatched")
