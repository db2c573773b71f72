"""Gunicorn settings for the API, as the image runs it:

    gunicorn -c python:api.gunicorn_conf "api.main:create_app()"

Workers are Uvicorn's; their number comes from WEB_CONCURRENCY (Gunicorn reads it itself).
With PROMETHEUS_MULTIPROC_DIR set, every worker writes its metrics there and /metrics sums
them, whichever worker answers; the folder is emptied at start and a dead worker's gauges
are dropped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from shared.logs import configure_logging
from shared.settings import Settings

worker_class = "api.serving.Worker"  # Uvicorn's, with jobq's options
bind = "0.0.0.0:8000"
# Above JOBQ_SHUTDOWN_GRACE (25 s by default): running requests and quick jobs finish first.
graceful_timeout = 30
accesslog = None  # the API writes its own access lines, with the request id


def _metrics_dir() -> Path | None:
    # prometheus-client's own variable; it must be set before any worker starts.
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def on_starting(server: Any) -> None:
    # The master's own lines (workers booting, timeouts) in the same format as the workers'.
    settings = Settings()
    configure_logging(settings.log_level, settings.effective_log_format)
    directory = _metrics_dir()
    if directory is not None:
        # Figures from an earlier run would be counted again.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if _metrics_dir() is not None:
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
