from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from api.middleware import RequestContextMiddleware


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def test_an_unhandled_error_is_a_json_500_with_the_usual_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = httpx.ASGITransport(app=RequestContextMiddleware(broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/x", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert response.headers["X-Request-ID"] == "req-1" and "X-Process-Time" in response.headers
    assert "a bug" in caplog.text


async def test_request_id_is_made_when_missing_or_malformed() -> None:
    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=RequestContextMiddleware(ok))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        made = await client.get("/")
        bad = await client.get("/", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["X-Request-ID"]) == 32
    assert bad.headers["X-Request-ID"] != "bad id with spaces"
