"""The Postgres and Redis `jobq dev` runs against: the configured ones, or embedded ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from cli.servers import EmbeddedPostgres, EmbeddedRedis, free_port
from shared.settings import Settings

DATABASE = "jobq"
PREFERRED_REDIS_PORT = 6380  # next to a system Redis's 6379, so both can run
REDIS_PID_FILE = "jobq-dev.pid"
LEFTOVER_STOP_TIMEOUT = 10.0

Notify = Callable[[str], None]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class BackingServices:
    """Resolves the database and Redis URLs, starting embedded servers for the unset ones."""

    settings: Settings
    notify: Notify = print
    database_url: str = ""
    redis_url: str = ""
    _postgres: EmbeddedPostgres | None = field(default=None, repr=False)
    _redis: EmbeddedRedis | None = field(default=None, repr=False)

    @property
    def embedded_postgres(self) -> bool:
        return self._postgres is not None

    @property
    def embedded_redis(self) -> bool:
        return self._redis is not None

    def start(self) -> None:
        given = self.settings.model_fields_set  # set from the environment or .env
        self.database_url = self.settings.database_url
        self.redis_url = self.settings.redis_url
        if "database_url" not in given:
            self.database_url = self._start_postgres()
        if "redis_url" not in given:
            self.redis_url = self._start_redis()

    def stop(self) -> None:
        """Redis first: it holds nothing Postgres does not also have."""
        if self._redis is not None:
            self.notify("stopping embedded Redis")
            self._redis.stop()
            (self._redis.data_dir / REDIS_PID_FILE).unlink(missing_ok=True)
            self._redis = None
        if self._postgres is not None:
            self.notify("stopping embedded Postgres")
            self._postgres.stop()
            self._postgres = None

    def _start_postgres(self) -> str:
        data_dir = self.settings.data_dir / "pg"
        data_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(data_dir)
        self.notify(f"starting embedded Postgres in {data_dir}")
        self._postgres = EmbeddedPostgres(data_dir)
        with warnings.catch_warnings():
            # platformdirs, imported by pgserver, warns when XDG_RUNTIME_DIR is unset: harmless.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            admin_url = self._postgres.start()
        asyncio.run(_ensure_database(admin_url, DATABASE))
        return self._postgres.url(DATABASE)

    def _start_redis(self) -> str:
        data_dir = self.settings.data_dir / "redis"
        pid_file = data_dir / REDIS_PID_FILE
        if _stop_leftover(pid_file, "redis-server"):
            self.notify("stopped an embedded Redis left running by an earlier jobq dev")
        port = (
            PREFERRED_REDIS_PORT if port_is_free("127.0.0.1", PREFERRED_REDIS_PORT) else free_port()
        )
        self.notify(f"starting embedded Redis on port {port}, data in {data_dir}")
        self._redis = EmbeddedRedis(data_dir, port=port, persist=True)
        url = self._redis.start()
        pid_file.write_text(f"{self._redis.pid}\n")
        return url


async def _ensure_database(admin_url: str, name: str) -> None:
    url = make_url(admin_url)
    host = url.query.get("host", url.host)
    connection = await asyncpg.connect(
        host=host if isinstance(host, str) else None,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _forget_dead_handles(data_dir: os.PathLike[str]) -> None:
    """Drop pids of dead processes from pgserver's handle list.

    pgserver stops the server only when the last live handle goes; a runner killed with
    SIGKILL leaves its pid in the list, and no later run would ever stop the server.
    """
    path = os.path.join(data_dir, ".handle_pids.json")
    with contextlib.suppress(OSError, ValueError):
        with open(path) as handle:
            pids = [int(pid) for pid in json.load(handle)]
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            with open(path, "w") as handle:
                json.dump(alive, handle)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_leftover(pid_file: Path, program: str) -> bool:
    """Stops the server a runner killed with SIGKILL left behind, so two never share a folder.

    True if there was one. The pid counts only if it still runs `program`.
    """
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    command = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    pid_file.unlink(missing_ok=True)
    if program not in command:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # Redis writes its append-only file and exits
    deadline = time.monotonic() + LEFTOVER_STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
