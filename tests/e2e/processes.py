"""Real uvicorn and Celery worker processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.serving import FLAGS as UVICORN_FLAGS
from shared.keys import QUEUES
from shared.settings import Settings


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBQ_")}
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        if isinstance(value, list):
            value = ",".join(value)
        env[f"JOBQ_{name.upper()}"] = str(value)
    env.update(
        JOBQ_SECRET_KEY=settings.secret_key.get_secret_value(),
        JOBQ_FLOWER_PASSWORD=settings.flower_password.get_secret_value(),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Managed:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Managed:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.log_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited {self.process.returncode}:\n{self.log()[-3000:]}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def start_api(settings: Settings, port: int, log_dir: Path) -> Managed:
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
        "--timeout-graceful-shutdown", f"{settings.shutdown_grace:g}",
        *UVICORN_FLAGS,
    ]  # fmt: skip
    api = Managed("api", command, child_env(settings), log_dir / f"api-{port}.log").start()
    deadline = time.monotonic() + 30
    while True:
        api.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return api
        if time.monotonic() > deadline:
            api.stop()
            raise TimeoutError(f"api did not start:\n{api.log()[-3000:]}")
        time.sleep(0.1)


def start_worker(
    settings: Settings, log_dir: Path, name: str = "worker", concurrency: int = 2
) -> Managed:
    command = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker",
        "--loglevel", "INFO", "--concurrency", str(concurrency), "--pool", "prefork",
        "-Q", ",".join(QUEUES), "-n", f"{name}@%h", "--without-mingle",
        "--without-gossip",
    ]  # fmt: skip
    env = child_env(settings, REMAP_SIGTERM="SIGQUIT")  # as `jobq worker` runs it
    worker = Managed(name, command, env, log_dir / f"{name}.log").start()
    worker.wait_for_log("ready.", timeout=60)
    return worker
