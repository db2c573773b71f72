"""Worker heartbeats: each Celery worker stamps its node name in a Redis sorted set every
JOBQ_WORKER_HEARTBEAT seconds, so the API can tell cheaply (one ZCOUNT) how many are alive."""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.keys import WORKERS

log = logging.getLogger("jobq.heartbeats")

# A worker counts as alive until it has missed this many heartbeats.
MISSED_BEATS = 3
# Entries of workers gone this long are removed.
FORGET_AFTER = 24 * 3600.0


async def alive_workers(redis: Redis, interval: float) -> int:
    return int(await redis.zcount(WORKERS, time.time() - interval * MISSED_BEATS, "+inf"))


class Heartbeat:
    """A daemon thread in a worker's main process; stops (and signs off) on `stop`."""

    def __init__(self, redis_url: str, node: str, interval: float) -> None:
        self.redis = SyncRedis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3)
        self.node = node
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobq-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.redis.zrem(WORKERS, self.node)
        except RedisError as exc:
            log.warning("could not sign off worker %s: %s", self.node, exc)
        self.redis.close()

    def beat(self) -> None:
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(WORKERS, {self.node: now})
            pipe.zremrangebyscore(WORKERS, 0, now - FORGET_AFTER)
            pipe.execute()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.beat()
            except RedisError as exc:
                log.warning("worker heartbeat failed: %s", exc)
            self._stopped.wait(self.interval)
