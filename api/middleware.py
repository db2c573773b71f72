"""Request id and timing on every response, and one log line per request, as a plain ASGI
middleware. The request id is bound to the log context, so every line logged while the request
is handled carries it (and is stored on the jobs it creates)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence

import structlog
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import HttpMetrics

log = logging.getLogger("jobq.api")
access = logging.getLogger("jobq.access")

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes call these every few seconds: their lines are kept for DEBUG.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        response_started = False
        status = 0  # stays 0 if the client went away before any answer

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started, status
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["X-Process-Time"] = f"{time.perf_counter() - started:.6f}"
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # A bug, not the client's fault: log it, and still answer in the API's shape.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send_with_headers(
                {"type": "http.response.body", "body": b'{"detail":"internal server error"}'}
            )
        finally:
            elapsed = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.observe(scope, status, elapsed)
            self._log(scope, status, elapsed)
            structlog.contextvars.reset_contextvars(**tokens)

    @staticmethod
    def _log(scope: Scope, status: int, elapsed: float) -> None:
        # The path only: a query string may carry a token.
        path = scope.get("path", "")
        level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
        if not access.isEnabledFor(level):
            return
        method = scope.get("method")
        access.log(
            level,
            "%s %s %d",
            method,
            path,
            status,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
            },
        )


class WebSocketLane:
    """The event WebSockets, served from the outermost of jobq's middleware.

    Everything under it (the request-context, body-limit, gzip and exception middleware,
    FastAPI's router, its two exit stacks and its dependency solving for each connection)
    would hold a frame or an object for as long as a socket is open, and none of it acts on a
    WebSocket. With a thousand watchers that was about 7 MB. Other WebSocket paths go on to
    FastAPI, which refuses them.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await self.app(scope, receive, send)
