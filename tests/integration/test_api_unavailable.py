"""A dependency that is down gives 503, never 500, and /ready says which one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from api.main import create_app
from cli.servers import free_port
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
    }[request.param]
    app = create_app(settings.model_copy(update=broken))
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


@pytest.mark.parametrize("broken_client", ["redis"], indirect=True)
async def test_submit_with_broker_down_is_sent_later_by_a_dispatcher(
    broken_client: httpx.AsyncClient, token: str, settings: Settings, app: FastAPI
) -> None:
    response = await broken_client.post(
        "/jobs", json={"kind": "sleep", "params": {"seconds": 1}}, headers=auth(token)
    )
    # The row is committed, so the job is not lost: it waits in Postgres, undispatched, and a
    # dispatcher that can reach the broker (here: `app`, the healthy API process) sends it.
    assert response.status_code == 202
    job_id = response.json()["id"].encode()
    redis = Redis.from_url(settings.redis_url)
    try:
        for _ in range(100):
            if any(job_id in message for message in await redis.lrange("jobq.normal", 0, -1)):
                return
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    raise AssertionError("the job was never published")
