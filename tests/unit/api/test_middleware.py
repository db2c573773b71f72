from __future__ import annotations

import httpx
import pytest
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from api.middleware import RequestContextMiddleware, WebSocketLane


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


async def _connect(app: ASGIApp, scope_type: str, path: str) -> list[Message]:
    """One connection to `app`, as a server would make it; returns what the app sent."""
    sent: list[Message] = []
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 1000},
    ]

    async def receive() -> Message:
        if scope_type == "http":
            return {"type": "http.request", "body": b"", "more_body": False}
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": scope_type, "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [], "method": "GET", "scheme": "ws",
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


async def test_the_websocket_lane_serves_its_routes_and_passes_on_the_rest() -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(f"lane {websocket.path_params['name']}")
        await websocket.close()

    passed_on: list[tuple[str, str]] = []

    async def rest(scope: Scope, receive: Receive, send: Send) -> None:
        passed_on.append((scope["type"], scope["path"]))

    lane = WebSocketLane(rest, routes=[WebSocketRoute("/ws/{name}", endpoint)])
    served = await _connect(lane, "websocket", "/ws/abc")
    assert [m["type"] for m in served] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert served[1]["text"] == "lane abc"
    assert await _connect(lane, "websocket", "/elsewhere") == []
    assert await _connect(lane, "http", "/ws/abc") == []  # HTTP is never the lane's
    assert passed_on == [("websocket", "/elsewhere"), ("http", "/ws/abc")]
