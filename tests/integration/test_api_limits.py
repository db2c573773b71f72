"""Per-subject rate limits and the active-jobs quota."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from api.main import create_app
from api.ratelimit import RateLimiter
from cli.servers import free_port
from shared.errors import TooManyRequests
from shared.keys import rate_limit_keys
from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import auth


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(update={"rate_limit": "5/minute", "max_active_jobs_per_subject": 3})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobq.test") as client:
            yield client


async def test_requests_over_the_rate_limit_get_429_with_headers(
    strict_client: httpx.AsyncClient, token: str, settings: Settings, subject: str
) -> None:
    answers = [await strict_client.get("/jobs", headers=auth(token)) for _ in range(6)]
    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    assert answers[0].headers["RateLimit-Policy"].endswith(";q=5;w=60")
    assert ";r=4;" in answers[0].headers["RateLimit"]
    refused = answers[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert ";r=0;" in refused.headers["RateLimit"]
    assert "rate limit" in refused.json()["detail"]
    # Another subject has a limit of its own.
    other = issue_token(settings, f"{subject}-other")
    assert (await strict_client.get("/jobs", headers=auth(other))).status_code == 200


async def test_active_jobs_over_the_quota_get_429(
    strict_client: httpx.AsyncClient, token: str
) -> None:
    body = {"kind": "echo", "params": {"message": "x"}, "delay_seconds": 3600}
    codes = [
        (await strict_client.post("/jobs", json=body, headers=auth(token))).status_code
        for _ in range(4)
    ]
    assert codes == [202, 202, 202, 429]


async def test_concurrent_hits_share_round_trips_and_each_is_decided_in_turn(
    redis: Redis, subject: str
) -> None:
    limiter = RateLimiter(redis, "5/minute")
    answers = await asyncio.gather(
        *(limiter.hit(subject) for _ in range(20)), return_exceptions=True
    )
    allowed = [answer for answer in answers if isinstance(answer, dict)]
    assert len(allowed) == 5
    assert all(isinstance(answer, TooManyRequests) for answer in answers if answer not in allowed)
    # Each allowed hit saw what the ones before it left.
    left = sorted(int(answer["RateLimit"].split(";r=")[1].split(";")[0]) for answer in allowed)
    assert left == [0, 1, 2, 3, 4]
    assert limiter.round_trips <= 2
    with pytest.raises(TooManyRequests):  # the window holds across batches
        await limiter.hit(subject)


async def test_a_forgotten_script_is_loaded_again_and_the_hit_counted(
    redis: Redis, subject: str
) -> None:
    limiter = RateLimiter(redis, "2/minute")
    await redis.script_flush()
    await asyncio.gather(limiter.hit(subject), limiter.hit(subject))
    with pytest.raises(TooManyRequests):
        await limiter.hit(subject)


async def test_hits_are_let_through_while_redis_is_unreachable(subject: str) -> None:
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    limiter = RateLimiter(unreachable, "1/minute")
    try:
        assert list(await asyncio.gather(limiter.hit(subject), limiter.hit(subject))) == [{}, {}]
    finally:
        await unreachable.aclose()


async def test_a_subject_with_broken_counters_goes_unchecked_alone(
    redis: Redis, subject: str
) -> None:
    limiter = RateLimiter(redis, "1/minute")
    _, current = rate_limit_keys(f"{subject}-broken", limiter.window_ms)
    await redis.hset(current, "not", "a counter")  # WRONGTYPE for the script
    broken, fine = await asyncio.gather(limiter.hit(f"{subject}-broken"), limiter.hit(subject))
    assert broken == {}
    assert ";r=0;" in fine["RateLimit"]
    with pytest.raises(TooManyRequests):  # the other subject is still counted
        await limiter.hit(subject)
    await redis.delete(current)
