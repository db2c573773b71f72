"""The Celery app both sides share (the worker adds the task), and publishing a job to it.

Celery carries only the job id, as JSON. Postgres is the record; Celery is delivery.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from celery import Celery
from kombu.entity import Queue
from pydantic import BaseModel

from shared.keys import DELIVER_WEBHOOK_TASK, QUEUES, RUN_JOB_TASK, queue_for
from shared.settings import Settings


class RunJobMessage(BaseModel):
    """Which job to run."""

    job_id: uuid.UUID


class DeliverWebhookMessage(BaseModel):
    """Which webhook delivery to attempt."""

    delivery_id: uuid.UUID


def create_celery(settings: Settings) -> Celery:
    app = Celery("jobq", broker=settings.effective_broker_url, set_as_current=False)
    transport_options: dict[str, Any] = {
        # A running job must never be re-delivered because it is long.
        "visibility_timeout": settings.visibility_timeout,
    }
    if settings.effective_broker_url.startswith(("redis://", "rediss://", "unix://")):
        # BRPOP on the queues in the listed order: high drains before normal before low.
        transport_options["queue_order_strategy"] = "priority"
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=False,
        task_default_queue=queue_for("normal"),
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],  # type: ignore[no-untyped-call]
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
        # False from a failed publish until a publish or a probe succeeds: while it is false
        # the API refuses heavy jobs (503) rather than accept what it cannot send.
        self.healthy = True

    def send(self, job_id: uuid.UUID, priority: str, job_timeout: float) -> None:
        message = RunJobMessage(job_id=job_id)
        try:
            self.celery.send_task(
                RUN_JOB_TASK,
                kwargs=message.model_dump(mode="json"),
                queue=queue_for(priority),
                routing_key=queue_for(priority),
                time_limit=job_timeout + self.grace + self.HARD_LIMIT_MARGIN,
            )
        except Exception:
            self.healthy = False
            raise
        self.healthy = True

    def send_webhook(self, delivery_id: uuid.UUID) -> None:
        message = DeliverWebhookMessage(delivery_id=delivery_id)
        # Small and quick: on the high queue, so a backlog of jobs does not hold them up.
        queue = queue_for("high")
        self.celery.send_task(
            DELIVER_WEBHOOK_TASK,
            kwargs=message.model_dump(mode="json"),
            queue=queue,
            routing_key=queue,
        )

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
