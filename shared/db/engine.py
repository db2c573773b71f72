"""Engine and session factory, built once per process (API lifespan, Celery child)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=settings.database_pre_ping,
        pool_timeout=5,
        connect_args={"timeout": 5, "server_settings": {"application_name": "jobq"}},
    )


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


def single_statements(sessions: SessionFactory) -> SessionFactory:
    """Sessions, on the same pool, for work of one statement: in autocommit mode the statement
    is its own transaction, which saves the BEGIN and COMMIT round trips around it. Only for
    a unit of work that is one statement: anything more needs `sessions.begin()`."""
    engine: AsyncEngine = sessions.kw["bind"]
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


class Disconnected(ConnectionError):
    """A plain statement's connection closed under it (a transient error: see is_transient)."""


class Statements:
    """Plain statements on the engine's pool, without a session: each borrows a pooled
    connection, runs on asyncpg directly in autocommit, and gives it back.

    For the hottest statements (a batch of submissions, a job's claim and its end), where a
    session and SQLAlchemy's Connection around a statement cost more than its round trip.
    A statement's errors come as asyncpg's (see `is_transient`), but for a connection found
    closed after one: that is discarded, not pooled again, and the error comes as
    Disconnected. A failure to connect comes as SQLAlchemy's, as from a session.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def rows(self, sql: str, *params: Any) -> list[Mapping[str, Any]]:
        pooled = await self._checkout()
        try:
            driver = pooled.driver_connection
            assert driver is not None
            try:
                return list(await driver.fetch(sql, *params))
            except Exception as exc:
                if not driver.is_closed():
                    raise
                pooled.invalidate(exc)
                raise Disconnected(f"the database connection closed: {exc}") from exc
        finally:
            pooled.close()

    async def _checkout(self) -> Any:
        """A pooled connection. A failure to connect comes as SQLAlchemy's error, as it would
        from a session: the driver's connect errors reach here in its DB-API wrapper only."""
        dialect = self.engine.dialect
        try:
            return await self.engine.raw_connection()
        except dialect.loaded_dbapi.Error as exc:
            wrapped = DBAPIError.instance(
                None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
            )
            raise wrapped from exc

    async def row(self, sql: str, *params: Any) -> Mapping[str, Any] | None:
        found = await self.rows(sql, *params)
        return found[0] if found else None


# SQLSTATE classes of errors that pass: connection exceptions, insufficient resources (too
# many connections), operator intervention (shutting down, starting up).
TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57")


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means "unreachable for now" rather than "this is wrong"."""
    if isinstance(exc, OSError | OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, asyncpg.PostgresError):  # asyncpg's own, from `Statements`
        return str(exc.sqlstate)[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and state[:2] in TRANSIENT_SQLSTATE_CLASSES
    return False
