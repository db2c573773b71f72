"""Per-subject request rate limits, kept in Redis so they hold across API processes.

Answers carry the IETF RateLimit headers (`RateLimit-Policy`, `RateLimit`); a request over the
limit gets 429 with `Retry-After`. If Redis cannot be reached the request is let through: the
limit protects the service, and refusing everything while Redis is down would not.

The count is the sliding window counter of the `limits` package (which parses the rule): this
window's hits plus the last window's, weighted by how much of it still overlaps. Each hit is
one script that counts and reads the window together, and the hits that arrive while a round
trip is in flight go together in the next pipeline: one round trip per batch of requests, not
two per request. Redis runs the scripts one after the other, so each hit is decided on the
count the hits before it left.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from shared.errors import ConfigurationError, TooManyRequests
from shared.keys import rate_limit_keys

log = logging.getLogger("jobq.ratelimit")

NAMESPACE = "jobq-requests"

# KEYS: the previous window's counter, the current one's. ARGV: limit, window (ms), cost.
# The current counter lives for two windows; once less than one is left, its window is over:
# it becomes the previous one, and a new current one starts.
# Returns {allowed (0/1), previous count, its ms to live, current count, its ms to live}.
HIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local current_ttl = redis.call('pttl', KEYS[2])
if current_ttl > 0 and current_ttl < window then
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + window)
end
local previous = tonumber(redis.call('get', KEYS[1])) or 0
local previous_ttl = math.max(redis.call('pttl', KEYS[1]), 0)
local current = tonumber(redis.call('get', KEYS[2])) or 0
current_ttl = math.max(redis.call('pttl', KEYS[2]), 0)
local weighted = math.floor(previous * previous_ttl / window) + current
if weighted + cost > limit then
    return {0, previous, previous_ttl, current, current_ttl}
end
if current_ttl > 0 then
    current = redis.call('incrby', KEYS[2], cost)
else
    redis.call('set', KEYS[2], cost, 'PX', window * 2)
    current = cost
    current_ttl = window * 2
end
return {1, previous, previous_ttl, current, current_ttl}
"""


@dataclass(frozen=True)
class Window:
    """One hit's outcome and the window it left, as the script returned them."""

    allowed: bool
    previous: int
    previous_ms: int
    current: int
    current_ms: int

    def remaining(self, limit: int, window_ms: int) -> int:
        weighted = math.floor(self.previous * self.previous_ms / window_ms) + self.current
        return max(0, limit - weighted)

    def reset_in(self, window_ms: int) -> float:
        """Seconds until the weighted count next drops by one (0 for an empty window)."""
        soonest = math.inf
        if self.previous:
            soonest = (self.previous_ms % (window_ms / self.previous)) / 1000
        if self.current:
            soonest = min(soonest, (self.current_ms % window_ms) / 1000)
        return 0.0 if soonest == math.inf else soonest


class RateLimiter:
    def __init__(self, redis: Redis, rule: str) -> None:
        """Counts over `redis`, which its owner closes."""
        try:
            self.item: RateLimitItem = parse(rule)
        except ValueError as exc:
            raise ConfigurationError(f"JOBQ_RATE_LIMIT {rule!r}: {exc}") from None
        self.redis = redis
        self.sha = hashlib.sha1(HIT.encode()).hexdigest()
        self.window_ms = self.item.get_expiry() * 1000
        self.policy = f'"{NAMESPACE}";q={self.item.amount};w={self.item.get_expiry()}'
        self._waiting: list[tuple[str, asyncio.Future[Window | None]]] = []
        self._sending: asyncio.Task[None] | None = None
        # Round trips made, for the tests and the bench.
        self.round_trips = 0

    async def hit(self, subject: str) -> dict[str, str]:
        """Count one request of `subject`; the headers to answer with. Raises TooManyRequests."""
        future: asyncio.Future[Window | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((subject, future))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send(), name="jobq-ratelimit")
        window = await future
        if window is None:
            return {}
        reset = math.ceil(window.reset_in(self.window_ms))
        remaining = window.remaining(self.item.amount, self.window_ms)
        headers = {
            "RateLimit-Policy": self.policy,
            "RateLimit": f'"{NAMESPACE}";r={remaining};t={reset}',
        }
        if not window.allowed:
            raise TooManyRequests(
                f"rate limit of {self.item.amount} requests per {self.item.get_expiry()}s exceeded",
                headers={**headers, "Retry-After": str(max(1, reset))},
            )
        return headers

    async def _send(self) -> None:
        """Send what waits, in round trips of one pipeline each, until nothing does. Every
        hit taken is answered, whatever happens: unchecked (let through) if not counted."""
        batch: list[tuple[str, asyncio.Future[Window | None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                windows = await self._count([subject for subject, _ in batch])
                for (_, future), window in zip(batch, windows, strict=True):
                    if not future.done():
                        future.set_result(window)
        except Exception:
            log.exception("rate limit not checked")
        finally:
            self._sending = None
            for _, future in [*batch, *self._waiting]:
                if not future.done():
                    future.set_result(None)
            self._waiting = []

    async def _count(self, subjects: list[str]) -> list[Window | None]:
        try:
            replies = await self._run(subjects)
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # Redis forgot the script (a restart, SCRIPT FLUSH): the hits it refused
                # were not counted; load it and send those again.
                await self.redis.script_load(HIT)
                again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                retried = await self._run([subjects[i] for i in again])
                for i, reply in zip(again, retried, strict=True):
                    replies[i] = reply
        except (RedisError, OSError) as exc:
            log.warning("rate limit not checked, Redis unavailable: %s", exc)
            return [None] * len(subjects)
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if failed:  # one subject's keys broken (e.g. WRONGTYPE): only its hits go unchecked
            log.warning("rate limit not checked for %d hit(s): %s", len(failed), failed[0])
        return [
            None
            if isinstance(r, Exception)
            else Window(bool(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in replies
        ]

    async def _run(self, subjects: list[str]) -> list[Any]:
        """One pipeline of hits; each reply is the script's or the error it met."""
        self.round_trips += 1
        args = (self.item.amount, self.window_ms, 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for subject in subjects:
                pipe.evalsha(self.sha, 2, *rate_limit_keys(subject, self.window_ms), *args)
            return list(await pipe.execute(raise_on_error=False))
