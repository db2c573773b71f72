"""The Celery worker: `celery -A worker.app worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

from shared.broker import create_celery
from shared.settings import load_settings
from worker import runtime

settings = load_settings()
celery = create_celery(settings)
celery.conf.worker_concurrency = settings.worker_concurrency
celery.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    runtime.start(settings)


@worker_process_shutdown.connect
def _stop_child(**_: Any) -> None:
    runtime.stop()


app = celery
