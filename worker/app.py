"""The Celery worker: `celery -A worker.app worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import (
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from shared.broker import create_celery
from shared.heartbeats import Heartbeat
from shared.logs import configure_logging
from shared.settings import load_settings
from worker import runtime

settings = load_settings()
celery = create_celery(settings)
celery.conf.worker_concurrency = settings.worker_concurrency
# With REMAP_SIGTERM=SIGQUIT (as `jobq worker` runs it), SIGTERM lets running jobs finish for
# this long; the worker then stops, and the leases of unfinished jobs hand them to others.
celery.conf.worker_soft_shutdown_timeout = settings.shutdown_grace
celery.conf.include = ["worker.tasks"]


@setup_logging.connect
def _logging(**_: Any) -> None:
    # Connected, this replaces Celery's own logging setup: its records go through ours.
    configure_logging(settings.log_level, settings.effective_log_format)


_heartbeat: list[Heartbeat] = []


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    node = getattr(sender, "hostname", None) or "celery"
    beat = Heartbeat(settings.redis_url, node, settings.worker_heartbeat)
    beat.start()
    _heartbeat.append(beat)


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    while _heartbeat:
        _heartbeat.pop().stop()


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    runtime.start(settings)


@worker_process_shutdown.connect
def _stop_child(**_: Any) -> None:
    runtime.stop()


app = celery
