"""Per-subject request rate limits, kept in Redis so they hold across API processes.

Answers carry the IETF RateLimit headers (`RateLimit-Policy`, `RateLimit`); a request over the
limit gets 429 with `Retry-After`. If Redis cannot be reached the request is let through: the
limit protects the service, and refusing everything while Redis is down would not.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from shared.errors import ConfigurationError, TooManyRequests

log = logging.getLogger("jobq.ratelimit")

NAMESPACE = "jobq-requests"


class RateLimiter:
    def __init__(self, redis: Redis, redis_url: str, rule: str) -> None:
        """Counts in `redis`'s connection pool, which its owner closes."""
        try:
            self.item: RateLimitItem = parse(rule)
        except ValueError as exc:
            raise ConfigurationError(f"JOBQ_RATE_LIMIT {rule!r}: {exc}") from None
        scheme, _, rest = redis_url.partition("://")
        self.storage = RedisStorage(
            f"async+{scheme}://{rest}",
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        seconds = self.item.get_expiry()
        self.policy = f'"{NAMESPACE}";q={self.item.amount};w={seconds}'

    async def hit(self, subject: str) -> dict[str, str]:
        """Count one request of `subject`; the headers to answer with. Raises TooManyRequests."""
        try:
            allowed = await self.limiter.hit(self.item, NAMESPACE, subject)
            stats = await self.limiter.get_window_stats(self.item, NAMESPACE, subject)
        except Exception as exc:
            log.warning("rate limit not checked, Redis unavailable: %s", exc)
            return {}
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Policy": self.policy,
            "RateLimit": f'"{NAMESPACE}";r={stats.remaining};t={reset}',
        }
        if not allowed:
            raise TooManyRequests(
                f"rate limit of {self.item.amount} requests per {self.item.get_expiry()}s exceeded",
                headers={**headers, "Retry-After": str(max(1, reset))},
            )
        return headers
