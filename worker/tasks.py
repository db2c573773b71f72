"""The one Celery task: run a job by id. Thin: it parses, delegates, and cleans up."""

from __future__ import annotations

import logging
import os
from typing import Any

from billiard.process import current_process

from shared.broker import DeliverWebhookMessage, RunJobMessage, RunJobsMessage
from shared.jobs.runner import RunReport
from shared.keys import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK, RUN_JOBS_TASK
from worker import runtime
from worker.app import celery, settings

log = logging.getLogger("jobq.worker")


@celery.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(**kwargs: Any) -> str:
    message = RunJobMessage.model_validate(kwargs)
    worker = runtime.start(settings)
    report = worker.run(worker.runner.run(message.job_id))
    _recycle_if_abandoned([report])
    return report.outcome.value


@celery.task(name=RUN_JOBS_TASK, ignore_result=True)
def run_jobs(**kwargs: Any) -> list[str]:
    message = RunJobsMessage.model_validate(kwargs)
    worker = runtime.start(settings)
    reports = worker.run(worker.runner.run_many(message.job_ids, worker.hand_back))
    _recycle_if_abandoned(reports)
    return [report.outcome.value for report in reports]


def _recycle_if_abandoned(reports: list[RunReport]) -> None:
    for report in reports:
        if report.abandoned_thread and current_process().name != "MainProcess":
            # A synchronous handler ignored its cancellation or timeout and still holds a
            # thread. The job is already recorded (and a group's later jobs handed back): end
            # this child so the pool replaces it.
            log.warning("job %s: recycling this worker process to stop its handler", report.job_id)
            os._exit(0)


@celery.task(name=DELIVER_WEBHOOK_TASK, ignore_result=True)
def deliver_webhook(**kwargs: Any) -> str:
    message = DeliverWebhookMessage.model_validate(kwargs)
    worker = runtime.start(settings)
    return worker.run(worker.webhooks.deliver(message.delivery_id))
