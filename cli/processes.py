"""The command lines of jobq's three long-running processes: API, Celery worker and Flower.

`jobq api|worker|flower` exec them as they are; `jobq dev` runs and supervises all three.
"""

from __future__ import annotations

import hashlib
import hmac
import sys

from api.serving import FLAGS as UVICORN_FLAGS
from shared.errors import ConfigurationError
from shared.keys import QUEUES
from shared.settings import PLACEHOLDER_SECRETS, Settings

Argv = list[str]


def api_argv(settings: Settings) -> Argv:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
        "--host", settings.api_host,
        "--port", str(settings.api_port),
        # On SIGTERM, running requests (quick jobs among them) get this long, then are
        # cancelled, and their jobs handed back.
        "--timeout-graceful-shutdown", f"{settings.shutdown_grace:g}",
        # The API writes its own access line, with the request id and without query strings.
        "--no-access-log",
        *UVICORN_FLAGS,
    ]  # fmt: skip


def worker_argv(settings: Settings, concurrency: int | None = None) -> Argv:
    argv = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker",
        "--loglevel", "INFO",
        "-Q", ",".join(QUEUES),
        "--concurrency", str(concurrency or settings.worker_concurrency),
    ]  # fmt: skip
    # Task events from the start only when asked: Flower turns them on while it runs.
    return [*argv, "-E"] if settings.worker_task_events else argv


def worker_env() -> dict[str, str]:
    """SIGTERM starts Celery's soft shutdown: running jobs get JOBQ_SHUTDOWN_GRACE seconds to
    finish, then the worker stops and leases hand the rest to other workers."""
    return {"REMAP_SIGTERM": "SIGQUIT"}


def flower_argv(settings: Settings) -> Argv:
    """Flower's command line; its credentials go in `flower_env`, out of sight of `ps`."""
    database = settings.data_dir.resolve() / "flower.db"
    return [
        sys.executable, "-m", "celery", "-A", "worker.app", "flower",
        f"--address={settings.flower_host}",
        f"--port={settings.flower_port}",
        # Task and worker history survives a restart: saved every minute and at exit.
        "--persistent=True",
        f"--db={database}",
        "--state_save_interval=60000",
    ]  # fmt: skip


def flower_env(settings: Settings) -> dict[str, str]:
    return {"FLOWER_BASIC_AUTH": f"{settings.flower_user}:{flower_password(settings)}"}


def flower_password(settings: Settings) -> str:
    """The Flower password; in dev a placeholder becomes one derived from the secret key.

    Derived rather than random so it stays the same across restarts of `jobq dev`.
    Outside dev a placeholder is refused, as the secret key is.
    """
    password = settings.flower_password.get_secret_value()
    if password.strip().lower() not in PLACEHOLDER_SECRETS:
        return password
    if settings.env != "dev":
        raise ConfigurationError("JOBQ_FLOWER_PASSWORD is unset or a placeholder; set one")
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"jobq-flower-password", hashlib.sha256).hexdigest()[:24]
