"""`jobq dev`: the whole stack in the foreground, for development.

Starts embedded Postgres and Redis unless URLs are configured, runs the migrations, then
supervises the API, a Celery worker and Flower until SIGINT or SIGTERM, and stops it all.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

import httpx
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url

from cli.backing import BackingServices, port_is_free
from cli.banner import Banner, browsable_host
from cli.processes import (
    api_argv,
    flower_argv,
    flower_env,
    flower_password,
    worker_argv,
    worker_env,
)
from cli.supervisor import Child, GaveUp, Supervisor
from shared.db.migrate import upgrade
from shared.settings import Settings
from shared.tokens import issue_token

DEV_TOKEN_TTL = 7 * 24 * 3600
TICK = 0.2
HEALTH_PROBE_INTERVAL = 0.5
HEALTH_WARN_AFTER = 60.0
STOP_ORDER = ["worker", "flower", "api"]


class DevRunner:
    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.stopping = threading.Event()
        self.backing = BackingServices(settings, notify=self.say)
        self.supervisor: Supervisor | None = None

    def say(self, message: str, style: str = "cyan") -> None:
        self.console.print(
            f"[{style}]jobq dev:[/] {escape(message)}", soft_wrap=True, highlight=False
        )

    def run(self) -> int:
        """Runs until a signal (exit code 0) or a failure (1)."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            if not self._ports_free():
                return 1
            self.backing.start()
            if self.stopping.is_set():
                return 0
            self.say("running migrations")
            upgrade(self.backing.database_url)
            if self.stopping.is_set():
                return 0
            self.supervisor = Supervisor(
                self._children(),
                STOP_ORDER,
                notify=self.say,
                stop_timeout=self.settings.shutdown_grace + 5,
            )
            self.supervisor.start()
            self._supervise(self.supervisor)
            return 0
        except GaveUp as exc:
            self.say(f"{exc}; giving up", style="bold red")
            return 1
        except Exception as exc:
            self.say(f"failed: {type(exc).__name__}: {exc}", style="bold red")
            self.console.print_exception()
            return 1
        finally:
            if self.supervisor is not None:
                self.supervisor.stop()
            self.backing.stop()
            self.say("stopped")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            self.say(f"{signal.Signals(signum).name}: stopping", style="bold yellow")
        self.stopping.set()

    def _ports_free(self) -> bool:
        wanted = [
            ("API", self.settings.api_host, self.settings.api_port, "JOBQ_API_PORT"),
            ("Flower", self.settings.flower_host, self.settings.flower_port, "JOBQ_FLOWER_PORT"),
        ]
        for name, host, port, variable in wanted:
            if not port_is_free(host, port):
                self.say(
                    f"{host}:{port} for the {name} is in use (another jobq dev?); "
                    f"stop that or set {variable}",
                    style="bold red",
                )
                return False
        return True

    def _children(self) -> list[Child]:
        env = dict(os.environ)
        env.update(
            JOBQ_DATABASE_URL=self.backing.database_url,
            JOBQ_REDIS_URL=self.backing.redis_url,
            JOBQ_SECRET_KEY=self.settings.secret_key.get_secret_value(),
            JOBQ_DATA_DIR=str(self.settings.data_dir.resolve()),
            PYTHONUNBUFFERED="1",
        )
        return [
            Child("api", api_argv(self.settings), env),
            Child("worker", worker_argv(self.settings), env | worker_env()),
            Child("flower", flower_argv(self.settings), env | flower_env(self.settings)),
        ]

    def _supervise(self, supervisor: Supervisor) -> None:
        started = time.monotonic()
        next_probe = started
        shown = warned = False
        while not self.stopping.wait(TICK):
            supervisor.check()
            now = time.monotonic()
            if shown or now < next_probe:
                continue
            next_probe = now + HEALTH_PROBE_INTERVAL
            if self._healthy():
                self._banner().show(self.console)
                shown = True
            elif not warned and now - started > HEALTH_WARN_AFTER:
                self.say(f"the API has not answered {self._api_url()}/health yet", "yellow")
                warned = True

    def _api_url(self) -> str:
        return f"http://{browsable_host(self.settings.api_host)}:{self.settings.api_port}"

    def _healthy(self) -> bool:
        try:
            response = httpx.get(f"{self._api_url()}/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _banner(self) -> Banner:
        settings = self.settings
        embedded = "embedded, data in {}, "
        database = _safe_url(self.backing.database_url)
        redis = _safe_url(self.backing.redis_url)
        if self.backing.embedded_postgres:
            database = embedded.format(settings.data_dir / "pg") + database
        if self.backing.embedded_redis:
            redis = embedded.format(settings.data_dir / "redis") + redis
        return Banner(
            api_url=self._api_url(),
            flower_url=f"http://{browsable_host(settings.flower_host)}:{settings.flower_port}",
            flower_user=settings.flower_user,
            flower_password=flower_password(settings),
            token=issue_token(settings, "dev", admin=True, ttl=DEV_TOKEN_TTL),
            database=database,
            redis=redis,
        )


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(configured)"


def run_dev(settings: Settings, console: Console | None = None) -> int:
    return DevRunner(settings, console or Console()).run()
