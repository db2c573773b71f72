"""Prometheus metrics for GET /metrics.

Two sources, so every figure is right however many API processes and workers there are:

- per-process figures (HTTP requests by route template, open event streams) kept by
  prometheus-client; with several API processes (Gunicorn) set PROMETHEUS_MULTIPROC_DIR and
  every process's figures are summed from there, whichever process is scraped;
- shared figures read at scrape time: job counters and histograms from Redis (written by
  whoever made each transition, see shared.metrics), jobs by status from Postgres, queue depth
  per Celery queue from the broker, live workers from their heartbeats. They are cached for a
  few seconds, so frequent scrapes cost little.

Label values are route templates, kinds, statuses and queue names: never ids or raw paths.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from sqlalchemy import func, select
from starlette.types import Scope

from shared.broker import read_timeouts
from shared.db.engine import SessionFactory
from shared.db.models import Job
from shared.heartbeats import alive_workers
from shared.keys import JOB_METRICS
from shared.metrics import Histogram as JobHistogram
from shared.metrics import JobFigures
from shared.settings import Settings

log = logging.getLogger("jobq.metrics")

SCRAPE_CACHE_SECONDS = 5.0
SHARED_TIMEOUT = 3.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Not counted: scrapes of /metrics itself, and event streams, which stay open for minutes.
UNCOUNTED_ROUTES = frozenset({"/metrics", "/jobs/{job_id}/events"})
UNMATCHED = "none"


def multiprocess_dir() -> str | None:
    # prometheus-client switches to multi-process mode from this variable, read when it is
    # first imported; the exposition has to follow whatever it chose.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class HttpMetrics:
    """Requests by route template, counted by the request middleware once the route is known.

    Label values are templates (`/jobs/{job_id}`) or `none` for paths no route matched, so
    their number is bounded whatever clients send.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["handler", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["handler", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        if status == 0:  # the client left before any answer
            return
        route = scope.get("route")
        handler = getattr(route, "path", None) or UNMATCHED
        if handler in UNCOUNTED_ROUTES:
            return
        method = scope.get("method", "")
        self.requests.labels(handler, method, str(status)).inc()
        self.latency.labels(handler, method).observe(seconds)


class ProcessMetrics:
    """What each API process counts itself."""

    def __init__(self) -> None:
        directory = multiprocess_dir()
        if directory is not None:
            # Gunicorn's on_starting makes (and empties) it; `jobq api` alone may not have.
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self.streams = Gauge(
            "jobq_event_streams",
            "Open event streams (WebSocket and SSE) on this API process.",
            ["transport"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        for transport in ("websocket", "sse"):
            self.streams.labels(transport)
        self.http = HttpMetrics(self.registry)

    def exposition(self) -> bytes:
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


@dataclass
class Snapshot:
    jobs: JobFigures = field(default_factory=JobFigures)
    by_status: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    workers: int | None = None
    errors: list[str] = field(default_factory=list)


class SharedMetrics:
    """The figures every API process reads from the shared stores, cached briefly."""

    def __init__(
        self, redis: Redis, sessions: SessionFactory, celery: Celery, settings: Settings
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.celery = celery
        self.settings = settings
        self._cached: tuple[float, Snapshot] | None = None
        self._lock = asyncio.Lock()
        # The broker's client blocks: it gets a thread of its own, so a broker that hangs holds
        # up one thread here, never the pool that publishing and quick jobs use.
        self._broker_thread = ThreadPoolExecutor(1, thread_name_prefix="jobq-queue-depth")
        self._reading: Future[dict[str, int]] | None = None

    def close(self) -> None:
        self._broker_thread.shutdown(wait=False, cancel_futures=True)

    async def snapshot(self, max_age: float = SCRAPE_CACHE_SECONDS) -> Snapshot:
        """The figures, read at most once per `max_age` by this process, however many ask."""
        async with self._lock:  # one caller at a time reads the stores; the others reuse it
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > max_age:
                self._cached = (now, await self.read())
            return self._cached[1]

    async def exposition(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(await self.snapshot()))
        return generate_latest(registry)

    async def read(self) -> Snapshot:
        snapshot = Snapshot()

        async def jobs() -> None:
            snapshot.jobs = JobFigures.parse(await self.redis.hgetall(JOB_METRICS))

        async def workers() -> None:
            snapshot.workers = await alive_workers(self.redis, self.settings.worker_heartbeat)

        async def by_status() -> None:
            async with self.sessions() as session:
                rows = await session.execute(
                    select(Job.status, func.count())
                    .where(Job.status.in_(("queued", "running")))
                    .group_by(Job.status)
                )
            snapshot.by_status = {"queued": 0, "running": 0}
            snapshot.by_status.update({status: count for status, count in rows})

        async def queues() -> None:
            if self._reading is not None and not self._reading.done():
                raise TimeoutError("the previous read of the broker has not finished")
            self._reading = self._broker_thread.submit(queue_depths, self.celery)
            snapshot.queues = await asyncio.wrap_future(self._reading)

        sources = {"jobs": jobs(), "workers": workers(), "by_status": by_status()}
        sources["queues"] = queues()
        results = await asyncio.gather(
            *(asyncio.wait_for(source, SHARED_TIMEOUT) for source in sources.values()),
            return_exceptions=True,
        )
        for name, result in zip(sources, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("metrics: could not read %s: %r", name, result)
                snapshot.errors.append(name)
        return snapshot


def queue_depths(celery: Celery) -> dict[str, int]:
    """Messages waiting in each jobq queue, from the broker (Redis or RabbitMQ)."""
    depths: dict[str, int] = {}
    with celery.connection_for_read(transport_options=read_timeouts(celery)) as connection:
        connection.ensure_connection(max_retries=1)  # fail fast: never retry forever here
        channel = connection.default_channel
        for name in sorted(queue.name for queue in celery.conf.task_queues):
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except connection.channel_errors:
                # Not declared yet: nothing was ever sent to it, no worker ever consumed it.
                depths[name] = 0
                channel = connection.channel()
    return depths


def _histogram(name: str, doc: str, histograms: dict[str, JobHistogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["kind"])
    for kind, histogram in sorted(histograms.items()):
        family.add_metric([kind], histogram.cumulative(), histogram.sum)
    return family


def _gauge(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        snap = self.snapshot
        submitted = CounterMetricFamily(
            "jobq_jobs_submitted", "Jobs accepted, by kind.", labels=["kind"]
        )
        for kind, count in sorted(snap.jobs.submitted.items()):
            submitted.add_metric([kind], count)
        yield submitted
        finished = CounterMetricFamily(
            "jobq_jobs_finished", "Jobs that reached an end, by kind and status.",
            labels=["kind", "status"],
        )  # fmt: skip
        for (kind, status), count in sorted(snap.jobs.finished.items()):
            finished.add_metric([kind, status], count)
        yield finished
        yield _histogram(
            "jobq_job_duration_seconds",
            "Run time of a job's last attempt, from its start to its end.",
            snap.jobs.duration,
        )
        yield _histogram(
            "jobq_queue_wait_seconds",
            "Time from when an attempt was due to when an executor started it.",
            snap.jobs.wait,
        )
        if snap.by_status:
            yield _gauge("jobq_jobs", "Jobs queued or running now, from Postgres.", "status",
                         snap.by_status)  # fmt: skip
        if snap.queues:
            yield _gauge("jobq_queue_depth", "Messages waiting in each Celery queue.", "queue",
                         snap.queues)  # fmt: skip
        if snap.workers is not None:
            yield GaugeMetricFamily(
                "jobq_workers_alive",
                "Celery workers whose heartbeat is recent.",
                value=snap.workers,
            )
        errors = GaugeMetricFamily(
            "jobq_metrics_source_up",
            "1 if the last scrape could read this source, 0 if not.",
            labels=["source"],
        )
        for source in ("jobs", "workers", "by_status", "queues"):
            errors.add_metric([source], 0 if source in snap.errors else 1)
        yield errors
