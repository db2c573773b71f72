"""The processes a benchmark measures: uvicorn serving jobq, the hello world or the naive API
(1 or more processes, same flags for all three), and Celery workers (jobq's and raw Celery's).
Everything listens on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import httpx

from api.serving import FLAGS as UVICORN_FLAGS
from cli.servers import free_port
from shared.settings import Settings
from tests.e2e.processes import Managed, child_env, start_worker

ROOT = Path(__file__).resolve().parents[1]


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a baseline process: this one's, without any JOBQ_ setting."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBQ_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


def uvicorn(
    name: str,
    target: str,
    *,
    processes: int,
    env: dict[str, str],
    log_dir: Path,
    health: str,
    factory: bool = False,
) -> tuple[Managed, str]:
    """Start `uvicorn target` with `processes` worker processes; returns it and its base URL
    once `health` answers 200."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(processes), "--log-level", "warning", "--no-access-log",
        *UVICORN_FLAGS,
    ]  # fmt: skip
    if factory:
        command.append("--factory")
    server = Managed(name, command, env, log_dir / f"{name}-{port}.log").start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        server.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + health, timeout=1).status_code == 200:
                # With several processes, give every one time to finish its start-up.
                time.sleep(1.0 * (processes > 1))
                return server, base
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"{name} did not start:\n{server.log()[-3000:]}")
        time.sleep(0.1)


def jobq_api(settings: Settings, processes: int, log_dir: Path) -> tuple[Managed, str]:
    return uvicorn(
        f"jobq-api-x{processes}",
        "api.main:create_app",
        processes=processes,
        env=child_env(settings),
        log_dir=log_dir,
        health="/ready",
        factory=True,
    )


def _plain_api(module: str, health: str, processes: int, log_dir: Path) -> tuple[Managed, str]:
    """A baseline of bench/ that needs no settings, as `bench.<module>:app`."""
    return uvicorn(
        f"{module}-x{processes}",
        f"bench.{module}:app",
        processes=processes,
        env=plain_env(),
        log_dir=log_dir,
        health=health,
    )


def hello_api(processes: int, log_dir: Path) -> tuple[Managed, str]:
    return _plain_api("hello", "/", processes, log_dir)


def floor_api(processes: int, log_dir: Path) -> tuple[Managed, str]:
    return _plain_api("floor", "/health", processes, log_dir)


def naive_api(settings: Settings, processes: int, log_dir: Path) -> tuple[Managed, str]:
    env = plain_env(NAIVE_DATABASE_URL=settings.database_url, NAIVE_BROKER_URL=settings.redis_url)
    return uvicorn(
        f"naive-x{processes}",
        "bench.naive:app",
        processes=processes,
        env=env,
        log_dir=log_dir,
        health="/docs",
    )


def jobq_worker(
    settings: Settings, log_dir: Path, concurrency: int, name: str = "bench-worker"
) -> Managed:
    """A worker with a log of its own: it is ready once "ready." appears in it."""
    return start_worker(settings, log_dir, name=name, concurrency=concurrency)


def raw_worker(
    settings: Settings, log_dir: Path, concurrency: int, delivery: str = "celery"
) -> Managed:
    """raw Celery's worker: the same pool, concurrency and flags as jobq's; `delivery`
    "jobq" gives it jobq's acknowledgement and prefetch settings too."""
    command = [
        sys.executable, "-m", "celery", "-A", "bench.rawcelery", "worker",
        "--loglevel", "INFO", "--concurrency", str(concurrency), "--pool", "prefork",
        "-Q", "bench.raw", "-n", "raw@%h", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    env = {**raw_env(settings), "RAW_DELIVERY": delivery}
    worker = Managed("raw-worker", command, env, log_dir / f"raw-worker-{delivery}.log").start()
    worker.wait_for_log("ready.", timeout=60)
    return worker


def raw_env(settings: Settings) -> dict[str, str]:
    """raw Celery's broker and counter: the Redis database jobq uses in the run."""
    return plain_env(RAW_BROKER_URL=settings.redis_url, RAW_COUNTER_URL=settings.redis_url)


def raw_sender(count: int) -> list[str]:
    """The command that sends `count` no-op tasks the way a Celery user does: task.delay()."""
    return [sys.executable, "-m", "bench.rawcelery", str(count)]
