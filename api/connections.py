"""The per-subject cap on open event streams, counted in Redis so it holds across API processes.

Each open stream is an entry in a sorted set per subject, scored with the time it last showed
it is alive; entries not refreshed within TTL (an API process that died) stop counting.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("jobq.connections")

TTL = 60.0


def _key(subject: str) -> str:
    return f"jobq:streams:{subject}"


class StreamCounter:
    def __init__(self, redis: Redis, cap: int) -> None:
        self.redis = redis
        self.cap = cap

    async def acquire(self, subject: str) -> str | None:
        """An id for a new stream of `subject`, or None when the subject is at its cap.

        If Redis cannot be reached, the stream is let through (the per-process cap still holds).
        """
        stream_id = uuid.uuid4().hex
        now = time.time()
        key = _key(subject)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now - TTL)
                pipe.zadd(key, {stream_id: now})
                pipe.zcard(key)
                pipe.expire(key, int(TTL * 2))
                _, _, count, _ = await pipe.execute()
            if count > self.cap:
                await self.redis.zrem(key, stream_id)
                return None
        except (RedisError, OSError) as exc:
            log.warning("stream cap not checked, Redis unavailable: %s", exc)
        return stream_id

    async def refresh(self, subject: str, stream_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zadd(_key(subject), {stream_id: time.time()}, xx=True)

    async def release(self, subject: str, stream_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(_key(subject), stream_id)
