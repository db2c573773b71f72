"""The one Celery task: run a job by id. Thin: it parses, delegates, and cleans up."""

from __future__ import annotations

import logging
import os
from typing import Any

from billiard.process import current_process

from shared.broker import DeliverWebhookMessage, RunJobMessage
from shared.keys import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from worker import runtime
from worker.app import celery, settings

log = logging.getLogger("jobq.worker")


@celery.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(**kwargs: Any) -> str:
    message = RunJobMessage.model_validate(kwargs)
    report = runtime.start(settings).run(runtime.start(settings).runner.run(message.job_id))
    if report.abandoned_thread and current_process().name != "MainProcess":
        # A synchronous handler ignored its cancellation or timeout and still holds a thread.
        # The job is already recorded; end this child so the pool replaces it.
        log.warning("job %s: recycling this worker process to stop its handler", message.job_id)
        os._exit(0)
    return report.outcome.value


@celery.task(name=DELIVER_WEBHOOK_TASK, ignore_result=True)
def deliver_webhook(**kwargs: Any) -> str:
    message = DeliverWebhookMessage.model_validate(kwargs)
    worker = runtime.start(settings)
    return worker.run(worker.webhooks.deliver(message.delivery_id))
