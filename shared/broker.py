"""The Celery app both sides share (the worker adds the task), and publishing a job to it.

Celery carries only job ids (one a message, or a group of them), as JSON. Postgres is the record;
Celery is delivery.

Priorities: on Redis, one queue per priority, drained in order (BRPOP on the listed queues).
On RabbitMQ, one queue with message priorities (`x-max-priority`), since a worker consuming
several queues there takes from them in no set order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.entity import Queue
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url

from shared.jobs.states import Priority
from shared.keys import (
    DELIVER_WEBHOOK_TASK,
    PRIORITIZED_QUEUE,
    PRIORITY_QUEUES,
    RUN_JOB_TASK,
    RUN_JOBS_TASK,
    queue_for,
)
from shared.settings import Settings

log = logging.getLogger("jobq.dispatcher")


class Sendable(Protocol):
    """What a run-job message is made from (a Job row)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def priority(self) -> str: ...
    @property
    def timeout_seconds(self) -> float: ...


# RabbitMQ message priorities (higher first). The queue's maximum is fixed once it is
# declared, so it leaves room between the levels.
MAX_MESSAGE_PRIORITY = 9
MESSAGE_PRIORITY = {Priority.HIGH: 9, Priority.NORMAL: 5, Priority.LOW: 1}
# Seconds a publish, or a read of the broker, may take before it counts as a failure: a broker
# that hangs (rather than refusing connections) must give 503s, never stuck requests.
BROKER_IO_TIMEOUT = 5.0


class RunJobMessage(BaseModel):
    """Which job to run."""

    job_id: uuid.UUID


# The most jobs one run-jobs message may carry.
MAX_GROUP = 64


class RunJobsMessage(BaseModel):
    """Which jobs to run, one after another in this order: a group handed over together."""

    job_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_GROUP)


@dataclass(frozen=True)
class Outgoing:
    """One message to send: a run-job for one job, or a run-jobs for a group."""

    task: str
    kwargs: dict[str, Any]
    priority: str
    time_limit: float
    job_ids: list[uuid.UUID]


def spread(items: Sequence[Any], most: int) -> list[Sequence[Any]]:
    """`items` in order, cut into as few runs of at most `most` as can be, evenly sized:
    12 at most 8 go as 6 and 6, never as 8 and 4."""
    count = -(-len(items) // most)
    size, extra = divmod(len(items), count) if count else (0, 0)
    runs, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        runs.append(items[start:end])
        start = end
    return runs


class DeliverWebhookMessage(BaseModel):
    """Which webhook delivery to attempt."""

    delivery_id: uuid.UUID


def is_amqp(celery: Celery) -> bool:
    """Whether the app's broker is RabbitMQ (any AMQP URL scheme kombu knows)."""
    with celery.connection_for_write() as connection:
        return bool(connection.transport.driver_type == "amqp")


def read_timeouts(celery: Celery) -> dict[str, float]:
    """Transport options for a short-lived connection that only reads (e.g. queue sizes):
    every socket operation bounded, whichever the broker."""
    if is_amqp(celery):
        return {"read_timeout": BROKER_IO_TIMEOUT, "write_timeout": BROKER_IO_TIMEOUT}
    return {"socket_timeout": BROKER_IO_TIMEOUT, "socket_connect_timeout": BROKER_IO_TIMEOUT}


def create_celery(settings: Settings) -> Celery:
    app = Celery("jobq", broker=settings.effective_broker_url, set_as_current=False)
    transport_options: dict[str, Any] = {}
    if is_amqp(app):
        # A publish returns once RabbitMQ has taken the message, so a refused one is an error
        # (and the API's 503), not a silent loss.
        transport_options["confirm_publish"] = True
    else:
        # Redis only: a running job must never be re-delivered because it is long, and BRPOP
        # on the queues in the listed order drains high before normal before low.
        transport_options["visibility_timeout"] = settings.visibility_timeout
        transport_options["queue_order_strategy"] = "priority"
        # Above kombu's 1 s BRPOP, so an idle worker never times out; a hung Redis does.
        transport_options["socket_timeout"] = 2 * BROKER_IO_TIMEOUT
        transport_options["socket_connect_timeout"] = BROKER_IO_TIMEOUT
    queues = [Queue(name, routing_key=name) for name in PRIORITY_QUEUES]  # type: ignore[no-untyped-call]
    queues.append(
        Queue(  # type: ignore[no-untyped-call]
            PRIORITIZED_QUEUE,
            routing_key=PRIORITIZED_QUEUE,
            queue_arguments={"x-max-priority": MAX_MESSAGE_PRIORITY},
        )
    )
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=settings.worker_prefetch,
        worker_send_task_events=settings.worker_task_events,
        task_send_sent_event=False,
        task_track_started=False,
        task_default_queue=queue_for("normal"),
        task_queues=queues,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    return app


class RedisWire:
    """Run-job messages written straight to a Redis broker, as kombu would write them.

    On Redis, a Celery message is a JSON envelope (protocol 2: headers naming the task, the
    body base64-encoded) pushed onto the list named after its queue; workers take it from
    there with BRPOP. Made here, a batch of them is one LPUSH per queue in one pipeline on the
    event loop: no thread hop, no per-message kombu producer. Kept identical to what
    `send_task` writes by tests/integration/test_broker.py, which compares the two.
    """

    def __init__(self, url: str, reply_to: str) -> None:
        self.url = url
        self.reply_to = reply_to
        self.origin = anon_nodename()
        self._redis: Redis | None = None

    @staticmethod
    def handles(celery: Celery) -> bool:
        """Whether the broker is one plain Redis URL that redis-py reads as kombu does (not a
        list of failover URLs, no kombu-only options, no key prefix)."""
        url = str(celery.conf.broker_url or "")
        options = celery.conf.get("broker_transport_options", {})
        if url.split("://", 1)[0] not in ("redis", "rediss") or ";" in url or "?" in url:
            return False
        try:
            parse_url(url)
        except ValueError:
            return False
        return not options.get("global_keyprefix")

    def message(self, task: str, kwargs: dict[str, Any], queue: str, time_limit: float) -> bytes:
        task_id = str(uuid.uuid4())
        embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        body = json.dumps([[], kwargs, embed]).encode()
        envelope = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [time_limit, None],
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": "()",
                "kwargsrepr": repr(kwargs),
                "origin": self.origin,
                "ignore_result": None,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": self.reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return json.dumps(envelope).encode()

    async def push(self, messages: Sequence[tuple[str, bytes]], *, front: bool = False) -> None:
        """LPUSH each (queue, message), in order within each queue, in one round trip.
        `front`: RPUSH instead, so that they are the next taken, still in their order."""
        if self._redis is None:
            self._redis = Redis.from_url(
                self.url,
                socket_timeout=BROKER_IO_TIMEOUT,
                socket_connect_timeout=BROKER_IO_TIMEOUT,
            )
        by_queue: dict[str, list[bytes]] = defaultdict(list)
        for queue, message in messages:
            by_queue[queue].append(message)
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue, queued in by_queue.items():
                if front:
                    pipe.rpush(queue, *reversed(queued))
                else:
                    pipe.lpush(queue, *queued)
            await pipe.execute()

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class Publisher:
    """Sends run-job messages. Blocking kombu calls run in a thread, off the event loop; on
    Redis, batches of run-job messages go over RedisWire instead."""

    # Past the job's own timeout and grace, Celery's parent process kills the child: a
    # backstop for a handler that blocks the child's event loop so it cannot stop itself.
    HARD_LIMIT_MARGIN = 60.0

    def __init__(
        self, celery: Celery, grace: float, *, group: int = 1, group_slice: float = 0.05
    ) -> None:
        self.celery = celery
        self.grace = grace
        # Heavy jobs of one priority handed over together go as run-jobs messages of up to
        # `group` jobs; a worker process that runs one hands back the rest of it once a job
        # of it has run `group_slice` seconds (see Runner.run_many).
        self.group = group
        self.group_slice = group_slice
        self.amqp = is_amqp(celery)
        # False from a failed publish until a publish or a probe succeeds: while it is false
        # the API refuses heavy jobs (503) rather than accept what it cannot send.
        self.healthy = True
        self.wire = (
            RedisWire(str(celery.conf.broker_url), celery.thread_oid)
            if RedisWire.handles(celery)
            else None
        )

    def time_limit(self, job_timeout: float) -> float:
        return job_timeout + self.grace + self.HARD_LIMIT_MARGIN

    def send_webhook(self, delivery_id: uuid.UUID) -> None:
        message = DeliverWebhookMessage(delivery_id=delivery_id)
        # Small and quick: at high priority, so a backlog of jobs does not hold them up.
        self.celery.send_task(
            DELIVER_WEBHOOK_TASK, kwargs=message.model_dump(mode="json"), **self.route("high")
        )

    def route(self, priority: Priority | str) -> dict[str, Any]:
        """Where a message of this priority goes: its queue, and on RabbitMQ its priority."""
        if self.amqp:
            return {
                "queue": PRIORITIZED_QUEUE,
                "routing_key": PRIORITIZED_QUEUE,
                "priority": MESSAGE_PRIORITY[Priority(priority)],
                # Never wait forever for RabbitMQ's confirm (a blocked or half-open connection).
                "timeout": BROKER_IO_TIMEOUT,
                "confirm_timeout": BROKER_IO_TIMEOUT,
            }
        queue = queue_for(priority)
        return {"queue": queue, "routing_key": queue}

    def probe(self) -> bool:
        """Try to reach the broker; updates and returns `healthy`."""
        try:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            self.healthy = True
        except Exception:
            self.healthy = False
        return self.healthy

    def outgoing(self, jobs: Sequence[Sendable], group: int | None = None) -> list[Outgoing]:
        """The messages that carry these jobs: per priority, in their order, as evenly sized
        groups of at most `group` (the publisher's own by default); a group of one is a
        run-job message, as is every message when `group` is 1."""
        by_priority: dict[str, list[Sendable]] = defaultdict(list)
        for job in jobs:
            by_priority[job.priority].append(job)
        messages = []
        for priority, same in by_priority.items():
            for run in spread(same, min(group or self.group, MAX_GROUP)):
                limit = max(self.time_limit(job.timeout_seconds) for job in run)
                ids = [job.id for job in run]
                if len(run) == 1:
                    kwargs = RunJobMessage(job_id=ids[0]).model_dump(mode="json")
                    messages.append(Outgoing(RUN_JOB_TASK, kwargs, priority, limit, ids))
                    continue
                # Each job but the last may run up to the slice before the rest go back.
                limit += (len(run) - 1) * self.group_slice
                kwargs = RunJobsMessage(job_ids=ids).model_dump(mode="json")
                messages.append(Outgoing(RUN_JOBS_TASK, kwargs, priority, limit, ids))
        return messages

    def send_many(self, jobs: Sequence[Sendable], group: int | None = None) -> list[uuid.UUID]:
        """Send several over one producer; returns the ids that may not have been sent.

        On Redis (kombu >= 5.7) the messages go in one pipeline, one round trip; on RabbitMQ
        each is published, and confirmed, in turn. After a failure all count as unsent: sent
        twice, a job is run once (its claim is fenced), while one not sent would wait.
        """
        try:
            with self.celery.producer_or_acquire() as producer, producer.batch():
                for message in self.outgoing(jobs, group):
                    self.celery.send_task(
                        message.task,
                        kwargs=message.kwargs,
                        time_limit=message.time_limit,
                        producer=producer,
                        **self.route(message.priority),
                    )
        except Exception as exc:
            self.healthy = False
            log.warning("could not publish %d job(s) (%s); will retry", len(jobs), exc)
            return [job.id for job in jobs]
        self.healthy = True
        return []

    async def publish_many(
        self, jobs: Sequence[Sendable], *, group: int | None = None, front: bool = False
    ) -> list[uuid.UUID]:
        """send_many, over RedisWire on Redis, else in one thread hop. `front`: on Redis,
        ahead of the messages already waiting (jobs taken from the queue once already)."""
        if self.wire is None:
            return await asyncio.to_thread(self.send_many, jobs, group)
        wire = self.wire
        messages = [
            (queue, wire.message(message.task, message.kwargs, queue, message.time_limit))
            for message in self.outgoing(jobs, group)
            for queue in [queue_for(message.priority)]
        ]
        try:
            await wire.push(messages, front=front)
        except Exception as exc:
            self.healthy = False
            log.warning("could not publish %d job(s) (%s); will retry", len(jobs), exc)
            return [job.id for job in jobs]
        self.healthy = True
        return []

    async def aclose(self) -> None:
        if self.wire is not None:
            await self.wire.aclose()
