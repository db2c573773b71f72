"""The Alembic history and the models agree, and every migration is reversible."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import models  # noqa: F401
from shared.db.base import Base
from shared.db.migrate import downgrade, upgrade
from tests.conftest import Servers


@pytest.fixture
def empty_database(servers: Servers) -> Iterator[str]:
    name = f"jobq_migrations_{uuid.uuid4().hex[:8]}"
    url = servers.create_database(name)
    yield url
    servers.drop_database(name)


def _inspect(url: str, check: Any) -> Any:
    async def run() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(check)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def test_upgrade_head_matches_the_models(empty_database: str) -> None:
    upgrade(empty_database)
    assert _inspect(empty_database, _diff) == []


def test_downgrade_base_removes_everything_and_upgrade_again_works(empty_database: str) -> None:
    upgrade(empty_database)
    downgrade(empty_database, "base")
    assert _inspect(empty_database, _tables) == {"alembic_version"}
    upgrade(empty_database)
    assert "jobs" in _inspect(empty_database, _tables)
