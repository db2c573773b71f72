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
# With REMAP_SIGTERM=SIGQUIT (as `jobq worker` runs it), SIGTERM lets running jobs finish for
# this long; the worker then stops, and the leases of unfinished jobs hand them to others.
celery.conf.worker_soft_shutdown_timeout = settings.shutdown_grace
celery.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    runtime.start(settings)


@worker_process_shutdown.connect
def _stop_child(**_: Any) -> None:
    runtime.stop()


app = celery
