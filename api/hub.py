"""One Redis subscription per API process, fanned out to every watcher in the process.

The subscription is held while the process has watchers: the first one opens it, and it closes
once none has been left for `LINGER` seconds (checked every idle round). A process nobody
watches through (most of them, when clients poll) then neither wakes for nor reads the events
of every job in the cluster.

Each watcher gets a bounded queue. A watcher that falls behind loses its queued events and is
told to resynchronise (it reloads the job from Postgres), so a slow client never holds up the
others nor grows memory without bound. Whenever the subscription takes hold (the first time,
or again after it dropped) every watcher is told to resynchronise: events may have gone out
between its snapshot and that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.aio import cancel_and_wait, pause
from shared.events import Envelope, JobEvent
from shared.jobs.service import Principal
from shared.keys import events_channel, redis_db

log = logging.getLogger("jobq.hub")


@dataclass(frozen=True)
class Resync:
    """Queued in place of events a watcher missed; `at` is when (loop time)."""

    at: float


@dataclass(frozen=True)
class Wire:
    """An event with its JSON text, made once however many sockets send it."""

    event: JobEvent
    text: str

    @classmethod
    def of(cls, event: JobEvent) -> Wire:
        return cls(event, event.model_dump_json())


@dataclass(frozen=True)
class Quiet:
    """Queued when nothing came for a whole idle period; `at` is when that was noticed (loop
    time): the watcher re-checks Postgres with a read begun after it."""

    at: float


# The hub's connection is named, so operators (and tests) can find it in CLIENT LIST.
HUB_CLIENT_NAME = "jobq-hub"
# How long the subscription outlives the process's last watcher, for the next one (a client
# reconnecting, the dashboard moving between pages) to find it open.
LINGER = 30.0
Item = Wire | Resync | Quiet


class TooManyConnections(Exception):
    pass


class Subscription:
    """One watcher's bounded queue of items, read by the one task that sends them.

    A deque and at most one waiting future rather than an asyncio.Queue: with a thousand
    sockets open, its 3.3 KB each (its own deques of getters and putters, and an Event) were a
    sixteenth of what a socket costs; this is under 1 KB.
    """

    def __init__(self, principal: Principal, job_id: uuid.UUID | None, size: int) -> None:
        self.principal = principal
        self.job_id = job_id
        self.size = size
        self.items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.overflows = 0
        self.since = asyncio.get_running_loop().time()
        self.heard = True  # since the hub's last idle round (a new watcher counts as heard)

    def wants(self, envelope: Envelope) -> bool:
        if self.job_id is not None:
            return envelope.event.job_id == self.job_id
        return self.principal.admin or envelope.owner == self.principal.subject

    def offer(self, item: Item) -> None:
        self.heard = True
        if len(self.items) < self.size:
            self._put(item)
            return
        if not isinstance(item, Resync):
            self.overflows += 1
        self.resync(asyncio.get_running_loop().time())

    def resync(self, at: float) -> None:
        """Drop what is queued: the watcher reloads from Postgres instead."""
        self.items.clear()
        self._put(Resync(at))

    def idle_round(self, now: float) -> None:
        """Called by the hub once every idle period: a round that finds nothing offered since
        the one before queues Quiet, so a quiet spell is noticed after one to two periods."""
        if self.heard:
            self.heard = False
        elif not self.items:
            self._put(Quiet(now))

    def _put(self, item: Item) -> None:
        self.items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Item:
        """The next event, a Resync, or a Quiet after a quiet spell (see `idle_round`).

        No timer per wait: under fan-out, arming one for every event of every watcher cost
        more than taking the event; one round per process keeps time for all of them.
        """
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()


class Hub:
    def __init__(
        self,
        redis_url: str,
        *,
        queue_size: int,
        max_per_subject: int,
        idle: float,
        linger: float = LINGER,
    ) -> None:
        self.redis_url = redis_url
        self.queue_size = queue_size
        self.max_per_subject = max_per_subject
        self.idle = idle
        self.linger = linger
        self._by_job: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._firehose: set[Subscription] = set()
        self._per_subject: dict[str, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self._rounds: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._started = False
        # When the last watcher left (loop time); None while someone watches.
        self._unwatched_since: float | None = None
        self.connected = asyncio.Event()
        self.connects = 0

    @property
    def watchers(self) -> int:
        return sum(self._per_subject.values())

    @property
    def subscribed(self) -> bool:
        """Whether the subscription is held (or being opened): someone watches, or did lately."""
        return self._task is not None

    def start(self) -> None:
        """The idle rounds start now; the subscription with the first watcher."""
        self._started = True
        self._rounds = asyncio.create_task(self._idle_rounds(), name="jobq-hub-idle")
        if self.watchers:
            self._watched()

    async def stop(self) -> None:
        self._started = False
        for task in (self._task, self._rounds, *self._closing):
            if task is not None:
                await cancel_and_wait(task)
        self._task = None

    def _watched(self) -> None:
        self._unwatched_since = None
        if self._started and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="jobq-hub")

    def _release_if_unwatched(self, now: float) -> None:
        """Close the subscription once no one has watched for `linger` seconds."""
        since = self._unwatched_since
        if self._task is None or since is None or now - since < self.linger:
            return
        task, self._task, self._unwatched_since = self._task, None, None
        # An event the closing subscription still delivers to a watcher that came meanwhile
        # is one it also gets from the new one: watchers skip a seq they have already sent.
        closing = asyncio.create_task(cancel_and_wait(task), name="jobq-hub-close")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _idle_rounds(self) -> None:
        while True:
            await pause(self.idle)
            now = asyncio.get_running_loop().time()
            for group in (*self._by_job.values(), self._firehose):
                for subscription in group:
                    subscription.idle_round(now)
            self._release_if_unwatched(now)

    @contextlib.contextmanager
    def subscribe(self, principal: Principal, job_id: uuid.UUID | None) -> Iterator[Subscription]:
        if self._per_subject[principal.subject] >= self.max_per_subject:
            raise TooManyConnections(principal.subject)
        subscription = Subscription(principal, job_id, self.queue_size)
        group = self._by_job[job_id] if job_id is not None else self._firehose
        group.add(subscription)
        self._per_subject[principal.subject] += 1
        self._watched()
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)
            self._per_subject[principal.subject] -= 1
            if not self._per_subject[principal.subject]:
                del self._per_subject[principal.subject]
            if not self._per_subject:
                self._unwatched_since = asyncio.get_running_loop().time()

    def deliver(self, envelope: Envelope) -> None:
        wire: Wire | None = None
        for subscription in self._by_job.get(envelope.event.job_id, ()):
            wire = wire or Wire.of(envelope.event)
            subscription.offer(wire)
        for subscription in self._firehose:
            if subscription.wants(envelope):
                wire = wire or Wire.of(envelope.event)
                subscription.offer(wire)

    def _resync_all(self) -> None:
        now = asyncio.get_running_loop().time()
        for group in (*self._by_job.values(), self._firehose):
            for subscription in group:
                subscription.resync(now)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            redis = Redis.from_url(
                self.redis_url,
                socket_connect_timeout=3,
                health_check_interval=10,
                client_name=HUB_CLIENT_NAME,
            )
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(events_channel(redis_db(redis)))
                    # Watchers that came before the subscription held, or while it was away,
                    # may have missed events: each reloads from Postgres.
                    self._resync_all()
                    self.connects += 1
                    self.connected.set()
                    delay = 0.1
                    await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("event subscription lost (%s); reconnecting in %.1fs", exc, delay)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await redis.aclose()
            await pause(delay)
            delay = min(delay * 2, 5.0)

    async def _listen(self, pubsub: object) -> None:
        async for message in pubsub.listen():  # type: ignore[attr-defined]
            if message.get("type") != "message":
                continue
            if not self._by_job and not self._firehose:
                continue  # no watcher on this process: nothing to read it for
            try:
                envelope = Envelope.model_validate_json(message["data"])
            except ValidationError:
                log.warning("ignoring a malformed event")
                continue
            self.deliver(envelope)
