"""Live job events: WebSocket `/ws/jobs/{id}`, `/ws/jobs`, and SSE `/jobs/{id}/events`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.background import BackgroundTask
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketState

from api.connections import TTL as STREAM_TTL
from api.connections import StreamCounter
from api.deps import CurrentPrincipal, Services, ServicesDep
from api.follower import Follower
from api.hub import Quiet, Subscription, TooManyConnections, Wire
from api.watchdog import Watch
from shared.db.engine import is_transient
from shared.errors import InvalidToken, NotFound, TooManyRequests
from shared.jobs.service import Principal
from shared.tokens import verify_token

router = APIRouter(tags=["events"])
log = logging.getLogger("jobq.events")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429


def _services(websocket: WebSocket) -> Services:
    services: Services = websocket.app.state.services
    return services


def _token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return websocket.query_params.get("token")


async def _authenticate(websocket: WebSocket, services: Services) -> Principal | None:
    await websocket.accept()
    token = _token(websocket)
    try:
        if not token:
            raise InvalidToken("missing token")
        return verify_token(services.settings, token)
    except InvalidToken as exc:
        await websocket.close(CLOSE_UNAUTHORIZED, reason=str(exc.detail))
        return None


async def _read_until_gone(websocket: WebSocket, watch: Watch) -> None:
    """Read (and ignore) what the client sends; when it leaves, end its stream."""
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except Exception:
        log.warning("reading from a websocket failed; ending its stream", exc_info=True)
    finally:
        watch.stop(CLOSE_NORMAL, "client left")  # nothing once the stream has ended


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code, reason=reason), 2)


@dataclass
class Slot:
    """An open event stream: its hub subscription, and its place in the subject's cap."""

    subscription: Subscription
    counter: StreamCounter
    subject: str
    stream_id: str
    refreshed: float = field(default_factory=time.monotonic)

    async def keep_alive(self) -> None:
        """Show the stream is still open, so other API processes keep counting it."""
        if time.monotonic() - self.refreshed > STREAM_TTL / 3:
            self.refreshed = time.monotonic()
            await self.counter.refresh(self.subject, self.stream_id)


@contextlib.asynccontextmanager
async def _slot(
    services: Services, principal: Principal, job_id: uuid.UUID | None, transport: str
) -> AsyncIterator[Slot]:
    """Raises TooManyConnections when the subject has all its streams open, on any process."""
    stream_id = await services.streams.acquire(principal.subject)
    if stream_id is None:
        raise TooManyConnections(principal.subject)
    gauge = services.process_metrics.streams.labels(transport)
    gauge.inc()
    try:
        with services.hub.subscribe(principal, job_id) as subscription:
            yield Slot(subscription, services.streams, principal.subject, stream_id)
    finally:
        gauge.dec()
        await services.streams.release(principal.subject, stream_id)


GOING_AWAY = (CLOSE_GOING_AWAY, "maximum connection lifetime; reconnect with ?after=SEQ")
TOO_SLOW = (CLOSE_TRY_AGAIN, "client too slow")


async def _serve(
    websocket: WebSocket,
    stream: AsyncIterator[Wire | None],
    lifetime: float,
    slot: Slot,
    *,
    one_job: bool,
) -> tuple[int, str]:
    """Pump events to the socket until the stream ends, the client leaves, or time is up.

    One task pumps, one reads from the client. The process's watchdog (api/watchdog.py) ends
    a stream whose client stopped reading, once one send has lasted JOBQ_WS_SEND_TIMEOUT, and
    one whose lifetime is up.
    """
    watchdog = _services(websocket).watchdog
    watch = watchdog.watch(lifetime)
    pumping = watch.task = asyncio.ensure_future(_pump(websocket, stream, slot, watch, one_job))
    reading = asyncio.ensure_future(_read_until_gone(websocket, watch))
    try:
        return await pumping
    finally:
        watchdog.release(watch)
        for task in (pumping, reading):
            task.cancel()
        await asyncio.gather(pumping, reading, return_exceptions=True)


async def _pump(
    websocket: WebSocket,
    stream: AsyncIterator[Wire | None],
    slot: Slot,
    watch: Watch,
    one_job: bool,
) -> tuple[int, str]:
    loop = asyncio.get_running_loop()
    try:
        async for event in stream:
            await slot.keep_alive()
            if watch.verdict is not None:
                # Its cancellation was lost on the way (redis-py can swallow one mid-command).
                raise asyncio.CancelledError
            if event is None:
                continue
            watch.sending_since = loop.time()
            await websocket.send_text(event.text)
            watch.sending_since = None
            if one_job and event.event.terminal:
                break
            event = None  # sent: not kept while the socket waits for the next one
            if watch.expired:
                return GOING_AWAY
        return CLOSE_NORMAL, "job finished"
    except asyncio.CancelledError:
        verdict = watch.taken()
        if verdict is None:
            raise
        return verdict
    except WebSocketDisconnect:  # a send found the client gone before the reader did
        return CLOSE_NORMAL, "client left"
    except Exception as exc:
        return _closing_for(exc)


def _closing_for(exc: Exception) -> tuple[int, str]:
    """How a stream that failed ends: the client can always reconnect and resume."""
    if isinstance(exc, _Missed):
        return CLOSE_TRY_AGAIN, "missed events; reload and reconnect"
    if is_transient(exc) or isinstance(exc, RedisError):
        return CLOSE_TRY_AGAIN, "server busy; reconnect with ?after=SEQ"
    log.exception("event stream failed")
    return CLOSE_ERROR, "server error; reconnect with ?after=SEQ"


async def watch_job(websocket: WebSocket) -> None:
    """`/ws/jobs/{job_id}[?after=SEQ]`: one job's events, ending after its terminal one."""
    services = _services(websocket)
    principal = await _authenticate(websocket, services)
    if principal is None:
        return
    settings = services.settings
    after = websocket.query_params.get("after")
    try:
        job_uuid = uuid.UUID(websocket.path_params["job_id"])
    except ValueError:
        await _close(websocket, CLOSE_NOT_FOUND, "job not found")
        return
    resume = None if after is None else int(after) if after.isascii() and after.isdigit() else -1
    if resume is not None and resume < 0:
        await _close(websocket, CLOSE_POLICY, "after must be a seq (0 or more)")
        return
    try:
        async with _slot(services, principal, job_uuid, "websocket") as slot:
            follower = Follower(
                services.reader, services.events, principal, job_uuid, slot.subscription
            )
            try:
                await follower.load()
            except NotFound:
                await _close(websocket, CLOSE_NOT_FOUND, "job not found")
                return
            except Exception as exc:
                await _close(websocket, *_closing_for(exc))
                return
            stream = follower.events(resume)
            code, reason = await _serve(
                websocket, stream, settings.ws_max_lifetime, slot, one_job=True
            )
    except TooManyConnections:
        code, reason = CLOSE_TOO_MANY, "too many connections for this subject"
    await _close(websocket, code, reason)


async def watch_all(websocket: WebSocket) -> None:
    """`/ws/jobs`: every event of every job the subject may see (admins: all), for dashboards."""
    services = _services(websocket)
    principal = await _authenticate(websocket, services)
    if principal is None:
        return
    settings = services.settings

    async def stream(subscription: Subscription) -> AsyncIterator[Wire | None]:
        while True:
            item = await subscription.next()
            if isinstance(item, Wire):
                yield item
            elif isinstance(item, Quiet):
                yield None
            else:
                # Events were dropped; the client must reload its list.
                raise _Missed()

    try:
        async with _slot(services, principal, None, "websocket") as slot:
            stream_of = stream(slot.subscription)
            code, reason = await _serve(
                websocket, stream_of, settings.ws_max_lifetime, slot, one_job=False
            )
    except TooManyConnections:
        code, reason = CLOSE_TOO_MANY, "too many connections for this subject"
    await _close(websocket, code, reason)


class _Missed(Exception):
    pass


# Served by api/middleware.py's WebSocketLane, ahead of FastAPI's routing (see there).
WEBSOCKET_ROUTES = (
    WebSocketRoute("/ws/jobs/{job_id}", watch_job),
    WebSocketRoute("/ws/jobs", watch_all),
)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 404: {"description": "No such job."}},
)
async def job_events(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> StreamingResponse:
    """The job's events as Server-Sent Events (`id:` is the seq); ends after the terminal one."""
    resume = last_event_id if last_event_id is not None else after
    cleanup = contextlib.AsyncExitStack()
    try:
        slot = await cleanup.enter_async_context(_slot(services, principal, job_id, "sse"))
        follower = Follower(services.reader, services.events, principal, job_id, slot.subscription)
        await follower.load()
    except TooManyConnections:
        await cleanup.aclose()
        raise TooManyRequests("too many connections for this subject") from None
    except BaseException:
        await cleanup.aclose()
        raise

    async def body() -> AsyncIterator[str]:
        async with cleanup:
            async for event in follower.events(resume):
                await slot.keep_alive()
                if event is None:
                    yield ": keep-alive\n\n"
                else:
                    seq, kind = event.event.seq, event.event.type
                    yield f"id: {seq}\nevent: {kind}\ndata: {event.text}\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Also when the client left before the body started (then `body` never runs); closing
        # twice is harmless.
        background=BackgroundTask(cleanup.aclose),
    )
