"""A profiling switch for operators: with JOBQ_PROFILING on, an admin's request with
`?profile=1` answers with a pyinstrument report of itself (HTML; `?profile=text` for text)
instead of its response. Off, the middleware is not installed at all."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from pyinstrument import Profiler
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import InvalidToken
from shared.settings import Settings
from shared.tokens import verify_token

log = logging.getLogger("jobq.profiling")

INTERVAL = 0.0005  # seconds between samples: fine enough for requests of a few milliseconds


class ProfilingMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        mode = (query.get("profile") or [""])[0]
        if mode not in ("1", "text") or not self._admin(scope):
            await self.app(scope, receive, send)
            return

        status = 0

        async def swallow(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        profiler = Profiler(interval=INTERVAL, async_mode="enabled")
        profiler.start()
        try:
            await self.app(scope, receive, swallow)
        finally:
            profiler.stop()
        log.info("profiled %s %s (%d)", scope.get("method"), scope.get("path"), status)
        if mode == "text":
            body = profiler.output_text(unicode=True, color=False).encode()
            content_type = b"text/plain; charset=utf-8"
        else:
            body = profiler.output_html().encode()
            content_type = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-profiled-status", str(status).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _admin(self, scope: Scope) -> bool:
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        try:
            return verify_token(self.settings, token.strip()).admin
        except InvalidToken:
            return False
