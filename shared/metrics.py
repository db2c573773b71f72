"""Job metrics, derived from job transitions and kept in Redis.

Whoever makes a transition (an API process or a worker child) adds its increments to one Redis
hash, in the same pipeline that publishes the transition's event. Every API process's /metrics
reads that hash, so the figures are the same whichever process is scraped, however many API
processes and workers there are, and on whatever hosts.

Counters live as long as the Redis data does; Prometheus treats a drop to zero as a reset.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.db.models import Job
from shared.jobs.states import JobStatus, is_terminal

# Seconds: a job runs from milliseconds (quick lane) to hours (heavy lane).
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
INF = "+Inf"
SEP = "|"  # never in a kind's name (letters, digits, `_` and `.`) nor in a status

SUBMITTED = "submitted"
FINISHED = "finished"
DURATION = "duration"
WAIT = "wait"


def bucket_label(value: float) -> str:
    """The `le` of the smallest bucket holding value (buckets are stored non-cumulative)."""
    index = bisect.bisect_left(BUCKETS, value)
    return INF if index == len(BUCKETS) else f"{BUCKETS[index]:g}"


def _observe(name: str, kind: str, seconds: float) -> list[tuple[str, float]]:
    seconds = max(seconds, 0.0)
    return [
        (SEP.join((name, kind, bucket_label(seconds))), 1),
        (SEP.join((name, kind, "sum")), seconds),
    ]


def increments(job: Job, *, ran: bool = True) -> list[tuple[str, float]]:
    """What a transition into the job's current state adds to the hash: (field, amount).

    queued with no attempt yet: submitted; running: how long it waited since it was due;
    terminal: finished by status and, when it ended from running (`ran`), how long its last
    attempt ran. A job cancelled while it waited in the queue has no run time to add.
    """
    status = JobStatus(job.status)
    if status == JobStatus.QUEUED:
        return [(SEP.join((SUBMITTED, job.kind)), 1)] if job.attempts == 0 else []
    if status == JobStatus.RUNNING:
        if job.started_at is None:
            return []
        return _observe(WAIT, job.kind, (job.started_at - job.run_at).total_seconds())
    if not is_terminal(status):
        return []
    added: list[tuple[str, float]] = [(SEP.join((FINISHED, job.kind, status.value)), 1)]
    if ran and job.started_at is not None and job.finished_at is not None:
        added += _observe(DURATION, job.kind, (job.finished_at - job.started_at).total_seconds())
    return added


@dataclass
class Histogram:
    buckets: dict[str, float] = field(default_factory=dict)  # le -> count in that bucket only
    sum: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: each `le` counts every observation at or below it."""
        running = 0.0
        out = []
        for le in [f"{bound:g}" for bound in BUCKETS] + [INF]:
            running += self.buckets.get(le, 0.0)
            out.append((le, running))
        return out


@dataclass
class JobFigures:
    """The hash, parsed."""

    submitted: dict[str, float] = field(default_factory=dict)  # kind -> count
    finished: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, status)
    duration: dict[str, Histogram] = field(default_factory=dict)  # kind -> histogram
    wait: dict[str, Histogram] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[Any, Any]) -> JobFigures:
        figures = cls()
        for key, value in raw.items():
            parts = (key.decode() if isinstance(key, bytes) else key).split(SEP)
            amount = float(value)
            if parts[0] == SUBMITTED and len(parts) == 2:
                figures.submitted[parts[1]] = amount
            elif parts[0] == FINISHED and len(parts) == 3:
                figures.finished[(parts[1], parts[2])] = amount
            elif parts[0] in (DURATION, WAIT) and len(parts) == 3:
                histograms = figures.duration if parts[0] == DURATION else figures.wait
                histogram = histograms.setdefault(parts[1], Histogram())
                if parts[2] == "sum":
                    histogram.sum = amount
                else:
                    histogram.buckets[parts[2]] = amount
        return figures
