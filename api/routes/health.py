"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ServicesDep
from shared.heartbeats import alive_workers
from shared.jobs.schemas import Readiness, Status

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 2.0


@router.get("/health", response_model=Status)
async def health() -> Status:
    """Liveness: the process answers. Checks no dependency."""
    return Status(status="ok")


async def _check(probe: asyncio.Future[object] | object) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)  # type: ignore[arg-type]
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(services: ServicesDep) -> JSONResponse:
    """Readiness: Postgres and Redis each answer within a short timeout. Also reports how
    many Celery workers are alive (from their heartbeats), without failing when none is."""

    async def database() -> None:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = {
        "database": await _check(database()),
        "redis": await _check(services.redis.ping()),
    }
    healthy = all(value == "ok" for value in checks.values())
    workers: int | None = None
    if checks["redis"] == "ok":
        with contextlib.suppress(Exception):
            workers = await asyncio.wait_for(
                alive_workers(services.redis, services.settings.worker_heartbeat), CHECK_TIMEOUT
            )
    body = Readiness(
        status="ok" if healthy else "unavailable", checks=checks, workers_alive=workers
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
