"""/metrics, /ready's worker count and gzip, through the API, with real Postgres and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from shared.heartbeats import Heartbeat, alive_workers
from shared.keys import WORKERS
from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import auth
from tests.integration.conftest import own_client


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    async with own_client(guarded) as client:
        yield client


async def test_metrics_are_open_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE jobq_jobs_submitted_total counter" in response.text
    assert "# TYPE http_requests_total counter" in response.text


async def test_metrics_token_is_required_when_set(guarded: httpx.AsyncClient) -> None:
    assert (await guarded.get("/metrics")).status_code == 401
    wrong = await guarded.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    right = await guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert right.status_code == 200
    assert "jobq_jobs_finished" in right.text


async def test_a_quick_job_shows_in_the_job_metrics(
    client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    async with Redis.from_url(settings.redis_url) as redis:
        before = await redis.hget("jobq:metrics:jobs", "finished|echo|succeeded")
        answer = await client.post(
            "/jobs", json={"kind": "echo", "params": {"message": "m"}}, headers=auth(token)
        )
        assert answer.status_code == 202
        job_id = answer.json()["id"]
        deadline = time.monotonic() + 10
        while (await client.get(f"/jobs/{job_id}", headers=auth(token))).json()["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        after = await redis.hget("jobq:metrics:jobs", "finished|echo|succeeded")
    assert int(after or 0) == int(before or 0) + 1


async def test_ready_counts_workers_from_their_heartbeats(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    async with Redis.from_url(settings.redis_url) as redis:
        await redis.delete(WORKERS)
        assert (await client.get("/ready")).json()["workers_alive"] == 0
        beat = Heartbeat(settings.redis_url, "celery@test-node", interval=5)
        beat.beat()
        body = (await client.get("/ready")).json()
        assert body["status"] == "ok"
        assert body["workers_alive"] == 1
        # A worker that stopped beating is no longer counted, and nothing else changes.
        await redis.zadd(WORKERS, {"celery@test-node": time.time() - 16})
        assert await alive_workers(redis, 5) == 0
        assert (await client.get("/ready")).status_code == 200
        beat.stop()  # signs off
        assert await redis.zscore(WORKERS, "celery@test-node") is None


async def test_large_answers_are_gzipped_when_asked(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["openapi"].startswith("3.")
    plain = await client.get("/openapi.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


@pytest.fixture
async def profiled(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with own_client(settings.model_copy(update={"profiling": True})) as client:
        yield client


async def test_an_admin_can_profile_a_request(
    profiled: httpx.AsyncClient, settings: Settings
) -> None:
    admin = {"Authorization": f"Bearer {issue_token(settings, 'operator', admin=True)}"}
    report = await profiled.get("/jobs?profile=1", headers=admin)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert report.headers["X-Profiled-Status"] == "200"
    assert "pyinstrument" in report.text.lower()
    assert report.headers["X-Request-ID"]
    text = await profiled.get("/jobs?profile=text", headers=admin)
    assert text.headers["content-type"].startswith("text/plain")
    assert "list_jobs" in text.text  # the route's own frame shows in the report


async def test_profiling_is_for_admins_only_and_off_by_default(
    profiled: httpx.AsyncClient, client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    # Not an admin: the request is answered as usual.
    plain = await profiled.get("/jobs?profile=1", headers=auth(token))
    assert plain.status_code == 200
    assert "items" in plain.json()
    # Switched off (the default): even an admin gets the usual answer.
    admin = {"Authorization": f"Bearer {issue_token(settings, 'operator', admin=True)}"}
    off = await client.get("/jobs?profile=1", headers=admin)
    assert "items" in off.json()
