"""Input Postgres or JSON cannot carry gets a clear 4xx, never a 500."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.conftest import auth


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "echo", "params": {"message": "a\\u0000b"}}',
        b'{"kind": "fail", "params": {"message": "\\u0000"}}',
        b'{"kind": "sleep", "params": {"seconds": NaN}}',
        b'{"kind": "sleep", "params": {"seconds": Infinity}}',
        b'{"kind": "sleep", "params": {"seconds": 1}, "timeout_seconds": NaN}',
        b'{"kind": "sleep", "params": {"seconds": 1}, "run_at": "0001-01-01T00:00:00+05:00"}',
        b'{"kind": "sleep", "params": {"seconds": 1}, "run_at": "9999-12-31T23:59:59-05:00"}',
        b'{"kind": "sleep", "params": {"seconds": 1}, "delay_seconds": 1e400}',
        b'{"kind": "\\u0000", "params": {}}',
        b'{"kind": "echo", "params": {"message": "\\ud800"}}',
        b'{"kind": "\\udfff", "params": {}}',
        b'{"kind": "echo", "params": {"message": "x"}, "priority": "\\ud800"}',
        b'{"kind": "primes", "params": {"limit": 1e999}}',
        b'{"kind": "primes", "params": {"limit": 123456789012345678901234567890}}',
        b'{"kind": "echo", "params": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
)
async def test_hostile_bodies_are_422(client: httpx.AsyncClient, token: str, body: bytes) -> None:
    response = await client.post(
        "/jobs", content=body, headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert (await client.get("/jobs", headers=auth(token))).json()["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "\x00"},
        {"kind": "a" * 500},
        {"status": "nope"},
        {"limit": "0"},
        {"cursor": "garbage"},
    ],
)
async def test_hostile_queries_are_422(
    client: httpx.AsyncClient, token: str, query: dict[str, str]
) -> None:
    response = await client.get("/jobs", params=query, headers=auth(token))
    assert response.status_code == 422, response.text


async def test_a_forged_cursor_far_in_the_past_is_422(
    client: httpx.AsyncClient, token: str
) -> None:
    raw = json.dumps(["0001-01-01T00:00:00+05:00", str(uuid.uuid4())]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = await client.get("/jobs", params={"cursor": cursor}, headers=auth(token))
    assert response.status_code == 422


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_is_refused(
    client: httpx.AsyncClient, token: str, content_type: str
) -> None:
    response = await client.post(
        "/jobs", content=b"kind=echo", headers={**auth(token), "Content-Type": content_type}
    )
    assert response.status_code in (415, 422)
    assert (await client.get("/jobs", headers=auth(token))).json()["items"] == []


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
