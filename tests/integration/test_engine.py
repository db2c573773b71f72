"""The two kinds of session, transactions and single statements that commit alone, and the
plain statements run without one."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import (
    Disconnected,
    SessionFactory,
    Statements,
    create_engine,
    is_transient,
    single_statements,
)
from shared.settings import Settings
from tests.conftest import plain_url

XACT = text("SELECT pg_current_xact_id()::text")


async def test_a_transaction_runs_its_statements_in_one(sessions: SessionFactory) -> None:
    async with sessions.begin() as session:
        first, second = await session.scalar(XACT), await session.scalar(XACT)
    assert first == second


async def test_single_statement_sessions_send_no_begin(sessions: SessionFactory) -> None:
    async with single_statements(sessions).begin() as session:
        first, second = await session.scalar(XACT), await session.scalar(XACT)
    # Each statement was a transaction of its own: nothing held them together.
    assert first != second


async def test_single_statement_sessions_share_the_pool(sessions: SessionFactory) -> None:
    assert single_statements(sessions).kw["bind"].pool is sessions.kw["bind"].pool


async def test_plain_statements_commit_alone_and_decode_as_sessions_do(engine: AsyncEngine) -> None:
    statements = Statements(engine)
    first = await statements.row("SELECT pg_current_xact_id()::text AS x")
    second = await statements.row("SELECT pg_current_xact_id()::text AS x")
    assert first is not None and second is not None and first["x"] != second["x"]
    # JSONB goes in as text and comes back parsed, with the codecs the engine's sessions use.
    row = await statements.row("SELECT $1::jsonb AS j, $2::int AS n", '{"a": [1, 2]}', 7)
    assert row is not None and (row["j"], row["n"]) == ({"a": [1, 2]}, 7)
    assert await statements.row("SELECT 1 WHERE false") is None
    assert len(await statements.rows("SELECT generate_series(1, 3)")) == 3


async def test_a_plain_statement_leaves_no_transaction_open(engine: AsyncEngine) -> None:
    statements = Statements(engine)
    await statements.rows("SELECT 1")
    async with engine.connect() as connection:
        # The pool's connection is idle, not in a transaction another statement would join.
        state = await connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'jobq' AND state LIKE 'idle in transaction%'"
        )
        assert state.scalar() == 0


async def test_a_connection_killed_under_a_statement_is_dropped_not_pooled(
    engine: AsyncEngine, settings: Settings
) -> None:
    statements = Statements(engine)
    pid = await statements.row("SELECT pg_backend_pid() AS pid")
    assert pid is not None
    other = await asyncpg.connect(plain_url(settings.database_url))
    try:
        await other.execute("SELECT pg_terminate_backend($1)", pid["pid"])
    finally:
        await other.close()
    failures = 0
    for _ in range(4):  # a killed connection fails its statement once, and is not pooled again
        try:
            await statements.row("SELECT pg_backend_pid() AS pid")
        except Exception as exc:
            assert is_transient(exc), exc
            failures += 1
    assert failures <= 1
    again = await statements.row("SELECT pg_backend_pid() AS pid")
    assert again is not None and again["pid"] != pid["pid"]


async def test_a_failed_connect_comes_as_sqlalchemys_error(settings: Settings) -> None:
    missing = make_url(settings.database_url).set(database=f"missing_{uuid.uuid4().hex[:8]}")
    engine = create_engine(
        settings.model_copy(update={"database_url": missing.render_as_string(False)})
    )
    try:
        with pytest.raises(DBAPIError, match="does not exist") as raised:
            await Statements(engine).rows("SELECT 1")
        assert not is_transient(raised.value)  # a missing database is not an outage
    finally:
        await engine.dispose()


def test_asyncpg_errors_pass_or_not_by_their_class() -> None:
    assert is_transient(asyncpg.ConnectionDoesNotExistError("gone"))
    assert is_transient(asyncpg.AdminShutdownError("shutting down"))
    assert is_transient(asyncpg.TooManyConnectionsError("full"))
    assert is_transient(Disconnected("the database connection closed"))
    assert not is_transient(asyncpg.InterfaceError("another operation is in progress"))
    assert not is_transient(asyncpg.UniqueViolationError("duplicate key"))
    assert not is_transient(ValueError("no"))
