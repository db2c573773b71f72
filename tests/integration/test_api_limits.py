"""Per-subject rate limits and the active-jobs quota."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.main import create_app
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
