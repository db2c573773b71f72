"""One event loop and one async engine per Celery child process, reused by every task."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from shared.broker import Publisher, create_celery
from shared.db.engine import create_engine, create_session_factory
from shared.db.models import Job
from shared.events import EventBus
from shared.jobs.registry import load_registry
from shared.jobs.runner import Runner
from shared.settings import Settings
from shared.webhooks import WebhookSender

T = TypeVar("T")


@dataclass
class Runtime:
    loop: asyncio.AbstractEventLoop
    runner: Runner
    redis: Redis
    webhooks: WebhookSender
    publisher: Publisher

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def hand_back(self, jobs: Sequence[Job]) -> list[uuid.UUID]:
        """A group's unstarted jobs, back to the head of their queues, one message each."""
        return await self.publisher.publish_many(jobs, group=1, front=True)

    def close(self) -> None:
        engine = self.runner.sessions.kw["bind"]
        self.loop.run_until_complete(engine.dispose())
        self.loop.run_until_complete(self.redis.aclose())
        self.loop.run_until_complete(self.publisher.aclose())
        self.publisher.celery.close()
        self.loop.close()


_lock = threading.Lock()
_runtime: Runtime | None = None


def start(settings: Settings) -> Runtime:
    """Build this process's runtime. Called from worker_process_init, or lazily on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            # A child runs one job at a time: a small pool is plenty.
            engine = create_engine(settings, pool_size=2)
            registry = load_registry(settings.kind_modules, max_timeout=settings.max_job_timeout)
            redis = Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
            events = EventBus(redis, settings.event_retention)
            sessions = create_session_factory(engine)
            runner = Runner(sessions, registry, settings, events)
            publisher = Publisher(create_celery(settings), settings.cancel_grace_seconds)
            _runtime = Runtime(loop, runner, redis, WebhookSender(sessions, settings), publisher)
        return _runtime


def stop() -> None:
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.close()
            _runtime = None
