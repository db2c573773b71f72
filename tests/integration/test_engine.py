"""The two kinds of session: transactions, and single statements that commit alone."""

from __future__ import annotations

from sqlalchemy import text

from shared.db.engine import SessionFactory, single_statements

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
