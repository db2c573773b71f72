"""The Celery app both sides share (the worker adds the task), and publishing a job to it.

Celery carries only the job id, as JSON. Postgres is the record; Celery is delivery.

Priorities: on Redis, one queue per priority, drained in order (BRPOP on the listed queues).
On RabbitMQ, one queue with message priorities (`x-max-priority`), since a worker consuming
several queues there takes from them in no set order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from celery import Celery
from kombu.entity import Queue
from pydantic import BaseModel

from shared.jobs.states import Priority
from shared.keys import (
    DELIVER_WEBHOOK_TASK,
    PRIORITIZED_QUEUE,
    PRIORITY_QUEUES,
    RUN_JOB_TASK,
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
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
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


class Publisher:
    """Sends run-job messages. Blocking kombu calls run in a thread, off the event loop."""

    # Past the job's own timeout and grace, Celery's parent process kills the child: a
    # backstop for a handler that blocks the child's event loop so it cannot stop itself.
    HARD_LIMIT_MARGIN = 60.0

    def __init__(self, celery: Celery, grace: float) -> None:
        self.celery = celery
        self.grace = grace
        self.amqp = is_amqp(celery)
        # False from a failed publish until a publish or a probe succeeds: while it is false
        # the API refuses heavy jobs (503) rather than accept what it cannot send.
        self.healthy = True

    def send(
        self, job_id: uuid.UUID, priority: str, job_timeout: float, producer: Any = None
    ) -> None:
        message = RunJobMessage(job_id=job_id)
        try:
            self.celery.send_task(
                RUN_JOB_TASK,
                kwargs=message.model_dump(mode="json"),
                time_limit=job_timeout + self.grace + self.HARD_LIMIT_MARGIN,
                producer=producer,
                **self.route(priority),
            )
        except Exception:
            self.healthy = False
            raise
        self.healthy = True

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

    async def publish(self, job_id: uuid.UUID, priority: str, job_timeout: float) -> None:
        await asyncio.to_thread(self.send, job_id, priority, job_timeout)

    def send_many(self, jobs: Sequence[Sendable]) -> list[uuid.UUID]:
        """Send several over one producer; returns the ids that may not have been sent.

        On Redis (kombu >= 5.7) the messages go in one pipeline, one round trip; on RabbitMQ
        each is published, and confirmed, in turn. After a failure all count as unsent: sent
        twice, a job is run once (its claim is fenced), while one not sent would wait.
        """
        try:
            with self.celery.producer_or_acquire() as producer, producer.batch():
                for job in jobs:
                    self.send(job.id, job.priority, job.timeout_seconds, producer=producer)
        except Exception as exc:
            self.healthy = False
            log.warning("could not publish %d job(s) (%s); will retry", len(jobs), exc)
            return [job.id for job in jobs]
        return []

    async def publish_many(self, jobs: Sequence[Sendable]) -> list[uuid.UUID]:
        """send_many in one thread hop."""
        return await asyncio.to_thread(self.send_many, jobs)
