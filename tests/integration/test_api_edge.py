"""Body size limit and CORS, through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.main import create_app
from shared.settings import Settings
from tests.conftest import auth


async def test_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    big = b'{"kind": "echo", "params": {"message": "' + b"x" * settings.max_body_bytes + b'"}}'
    response = await client.post(
        "/jobs", content=big, headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert response.headers["X-Request-ID"]


async def test_body_over_the_limit_without_content_length_is_413(
    client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"kind": "echo", "params": {"message": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}}'

    response = await client.post(
        "/jobs", content=chunks(), headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert (await client.get("/jobs", headers=auth(token))).json()["items"] == []


async def test_body_under_the_limit_is_fine(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "x" * 900}}, headers=auth(token)
    )
    assert response.status_code == 202


async def test_cors_preflight_from_an_allowed_origin(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["https://dash.example"]}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://jobq.test") as client:
        allowed = await client.options(
            "/jobs",
            headers={
                "Origin": "https://dash.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
            },
        )
        other = await client.options(
            "/jobs",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
    ],
)
async def test_webhooks_to_internal_addresses_are_refused_by_default(
    client: httpx.AsyncClient, token: str, url: str
) -> None:
    response = await client.post(
        "/jobs",
        json={"kind": "echo", "params": {"message": "x"}, "webhook_url": url},
        headers=auth(token),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "webhook_url"]
