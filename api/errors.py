"""Domain errors and unreachable dependencies, rendered as HTTP in one place."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.db.engine import is_transient
from shared.errors import InvalidToken, JobqError, TooManyRequests, Unavailable
from shared.jobs.outcome import storable

log = logging.getLogger("jobq.api")

UNAVAILABLE = (
    BrokerError,
    RedisConnectionError,
    RedisTimeoutError,
    PoolTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def _render(error: JobqError) -> JSONResponse:
    headers = dict(error.headers)
    detail = error.detail
    if isinstance(detail, list):
        # Echo inputs back only when JSON can carry them (not NaN, not a lone surrogate).
        detail = [
            {k: v for k, v in item.items() if k != "input" or storable(v)}
            if isinstance(item, dict)
            else item
            for item in detail
        ]
    if isinstance(error, InvalidToken):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, Unavailable | TooManyRequests):
        headers.setdefault("Retry-After", str(error.retry_after))
    return JSONResponse(
        {"detail": jsonable_encoder(detail)}, status_code=error.status_code, headers=headers
    )


async def handle_jobq_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobqError)
    return _render(exc)


async def handle_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency unavailable on %s: %r", request.url.path, exc)
    return _render(Unavailable())


async def handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    if is_transient(exc):
        return await handle_unavailable(request, exc)
    # Anything else from the database is a bug, not an outage: let it surface.
    raise exc


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, but safe for inputs JSON cannot carry back (NaN, infinity)."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        item = {key: error[key] for key in ("type", "loc", "msg") if key in error}
        if "input" in error and storable(jsonable_encoder(error["input"])):
            item["input"] = error["input"]
        errors.append(item)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(JobqError, handle_jobq_error)
    app.add_exception_handler(DBAPIError, handle_database_error)
    # asyncpg's own, from the statements run without a session (shared.db.engine.Statements).
    app.add_exception_handler(asyncpg.PostgresError, handle_database_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    for error in UNAVAILABLE:
        app.add_exception_handler(error, handle_unavailable)
