"""The FastAPI application: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis

from api import redaction
from api.connections import StreamCounter
from api.deps import Services
from api.errors import install_error_handlers
from api.hub import Hub
from api.limits import BodyLimitMiddleware
from api.metrics import ProcessMetrics, SharedMetrics
from api.middleware import RequestContextMiddleware, WebSocketLane
from api.ratelimit import RateLimiter
from api.routes import events as event_routes
from api.routes import health, jobs, kinds, metrics, stats
from api.snapshots import JobReader
from api.watchdog import Watchdog
from shared.aio import cancel_and_wait
from shared.broker import Publisher, create_celery
from shared.db.engine import create_engine, create_session_factory
from shared.events import EventBus
from shared.jobs.dispatcher import Dispatcher
from shared.jobs.executor import LocalExecutor
from shared.jobs.intake import Intake
from shared.jobs.registry import load_registry
from shared.jobs.retention import Pruner
from shared.jobs.runner import Runner
from shared.logs import configure_logging
from shared.settings import Settings, load_settings

log = logging.getLogger("jobq.api")

SHUTDOWN_STEP = 5.0
# With 1,000 WebSockets open, each collection of the oldest generation took 50 to 200 ms: a
# pause that every watcher waiting for an event sees (bench/fanout.py, publish -> receive p99
# 192 ms). Once the process has started, what start-up made (modules, schemas, the app) is
# moved out of the collector's sight, and the youngest generation is collected every 10,000
# allocations rather than 700, so fewer short-lived objects age into the oldest (p99 35 ms).
GC_THRESHOLDS = (10_000, 10, 10)
STATIC = Path(__file__).parent / "static"
# A Host header fit to name in the dashboard's Content-Security-Policy.
HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    registry = load_registry(settings.kind_modules, max_timeout=settings.max_job_timeout)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    redis = Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    celery = create_celery(settings)
    events = EventBus(redis, settings.event_retention)
    hub = Hub(
        settings.redis_url,
        queue_size=settings.ws_queue_size,
        max_per_subject=settings.ws_max_per_subject,
        idle=settings.ws_idle_check,
    )
    watchdog = Watchdog(settings.ws_send_timeout, event_routes.GOING_AWAY, event_routes.TOO_SLOW)
    local = LocalExecutor(Runner(sessions, registry, settings, events))
    dispatcher = Dispatcher(
        sessions,
        Publisher(
            celery,
            settings.cancel_grace_seconds,
            group=settings.dispatch_group,
            group_slice=settings.dispatch_group_slice,
        ),
        local,
        events,
        interval=settings.dispatch_interval,
        batch=settings.dispatch_batch,
        claim_timeout=settings.claim_timeout,
        webhook_lease=settings.webhook_timeout + 30,
    )
    intake = Intake(
        sessions,
        events,
        dispatcher.hand_over,
        max_active=settings.max_active_jobs_per_subject,
        failpoints=settings.failpoints,
    )
    app.state.services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        registry=registry,
        redis=redis,
        local=local,
        dispatcher=dispatcher,
        intake=intake,
        events=events,
        hub=hub,
        watchdog=watchdog,
        reader=JobReader(sessions),
        ratelimiter=RateLimiter(redis, settings.rate_limit),
        streams=StreamCounter(redis, settings.ws_max_per_subject),
        process_metrics=app.state.process_metrics,
        metrics=SharedMetrics(redis, sessions, celery, settings),
    )
    hub.start()
    watchdog.start()
    intake.start()
    dispatching = asyncio.create_task(dispatcher.run_forever(), name="jobq-dispatcher")
    # Every API process runs one; an advisory lock lets one at a time prune.
    pruning = asyncio.create_task(
        Pruner(sessions, registry, settings, redis).run_forever(), name="jobq-pruner"
    )
    if app.state.tune_gc:
        settle_gc()
    try:
        yield
    finally:
        # Each step is bounded: a dependency that hangs must not stop the process exiting.
        await _bounded("submissions", intake.stop())
        await _bounded("dispatcher", cancel_and_wait(dispatching))
        await _bounded("pruner", cancel_and_wait(pruning))
        grace = settings.shutdown_grace
        await _bounded("quick jobs", local.drain(grace), grace + 2)
        await _bounded("events hub", hub.stop())
        await _bounded("websocket watchdog", watchdog.stop())
        await _bounded("redis", redis.aclose())
        app.state.services.metrics.close()
        await _bounded("broker", dispatcher.publisher.aclose())
        await asyncio.to_thread(celery.close)
        await _bounded("database", engine.dispose())


def settle_gc() -> None:
    """Freeze what start-up left alive and collect the young less often (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _bounded(
    name: str, step: Coroutine[Any, Any, None], limit: float = SHUTDOWN_STEP
) -> None:
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()
        log.warning("shutdown: %s did not stop within %.0fs", name, limit)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("shutdown: %s failed: %r", name, task.exception())


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app. Called with no settings, it is the process's entry point (uvicorn's or
    Gunicorn's factory): it loads the settings and configures logging."""
    entry_point = settings is None
    if settings is None:
        settings = load_settings()
        configure_logging(settings.log_level, settings.effective_log_format)
    app = FastAPI(
        title="jobq",
        version="0.1.0",
        summary="Submit jobs, follow their progress, get their results.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Only in a server process of its own: tests build many apps in one interpreter.
    app.state.tune_gc = entry_point
    redaction.install()
    app.state.process_metrics = ProcessMetrics()
    # Event streams (text/event-stream) are never compressed: each event must leave at once.
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                "X-Request-ID",
            ],
            expose_headers=[
                "Location",
                "X-Request-ID",
                "X-Process-Time",
                "ETag",
                "Retry-After",
                "Idempotent-Replayed",
                "RateLimit",
                "RateLimit-Policy",
            ],
            max_age=600,
        )
    if settings.profiling:
        from api.profiling import ProfilingMiddleware  # pyinstrument, only when it is on

        app.add_middleware(ProfilingMiddleware, settings=settings)
    # Outermost for HTTP: every response, refusals included, carries the request id.
    app.add_middleware(RequestContextMiddleware, metrics=app.state.process_metrics.http)
    app.add_middleware(WebSocketLane, routes=event_routes.WEBSOCKET_ROUTES)
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(event_routes.router)
    app.include_router(kinds.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(stats.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/", dashboard, methods=["GET"], include_in_schema=False)
    return app


async def dashboard(request: Request) -> FileResponse:
    """The dashboard page; its scripts talk to this API only (HTTP and WebSocket)."""
    return FileResponse(
        STATIC / "index.html",
        headers={
            "Content-Security-Policy": _dashboard_policy(request.headers.get("host", "")),
            "Cache-Control": "no-cache",
        },
    )


def _dashboard_policy(host: str) -> str:
    # 'self' covers the page's own ws:/wss: in current browsers; older ones need them named.
    sockets = f" ws://{host} wss://{host}" if HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
