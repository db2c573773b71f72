"""The heavy lane's baseline: raw Celery running a no-op task, nothing around it.

The worker runs with the same pool and concurrency as jobq's; each task only counts itself in
Redis (one INCR), so the benchmark knows when all have run without a result backend.
Configured from the environment: RAW_BROKER_URL and RAW_COUNTER_URL (redis://...), and
RAW_DELIVERY=jobq for jobq's delivery settings in place of Celery's defaults.
"""

from __future__ import annotations

import os

from celery import Celery
from redis import Redis

QUEUE = "bench.raw"
COUNTER = "bench:raw:done"

app = Celery("raw", broker=os.environ.get("RAW_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_default_queue = QUEUE
app.conf.task_ignore_result = True
if os.environ.get("RAW_DELIVERY") == "jobq":
    # jobq's delivery settings (shared/broker.py): acknowledged once run, one message a child.
    app.conf.task_acks_late = True
    app.conf.task_reject_on_worker_lost = True
    app.conf.worker_prefetch_multiplier = 1
_redis: Redis | None = None


@app.task(name="raw.noop")
def noop() -> None:
    global _redis
    if _redis is None:
        _redis = Redis.from_url(os.environ.get("RAW_COUNTER_URL", "redis://127.0.0.1:6379/0"))
    _redis.incr(COUNTER)


def send(count: int) -> None:
    """Send `count` tasks, as a client of raw Celery does: one .delay() each."""
    for _ in range(count):
        noop.delay()


if __name__ == "__main__":
    import sys

    send(int(sys.argv[1]))
