"""What a handler sees while it runs: its job, its attempt, progress and cancellation."""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field

from shared.errors import JobCancelled

MAX_MESSAGE = 1000


@dataclass(frozen=True)
class ProgressUpdate:
    current: float
    total: float | None
    message: str | None

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return round(max(0.0, min(100.0, 100.0 * self.current / self.total)), 2)

    def as_json(self) -> dict[str, object]:
        return {
            "current": self.current,
            "total": self.total,
            "percent": self.percent,
            "message": self.message,
        }


@dataclass
class _Shared:
    """State shared between the handler (any thread) and the runner's pulse loop."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: threading.Event = field(default_factory=threading.Event)
    pending: ProgressUpdate | None = None


@dataclass(frozen=True)
class JobContext:
    """Handed to every handler. Safe to use from the handler's thread or event loop.

    `progress()` never blocks: it records the latest figures, which the runner writes to
    Postgres a few times a second at most (the last one always kept). It raises
    `JobCancelled` once the job has been cancelled, so a handler that reports progress stops
    at its next report.
    """

    job_id: uuid.UUID
    kind: str
    attempt: int
    max_attempts: int
    _shared: _Shared = field(default_factory=_Shared, repr=False)

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress; raises JobCancelled once the job is cancelled.

        Raises ValueError for a number that is not finite.
        """
        figures = (float(current), None if total is None else float(total))
        if not all(math.isfinite(figure) for figure in figures if figure is not None):
            raise ValueError(f"progress must be finite numbers, got {current!r} / {total!r}")
        if message is not None:
            message = message.replace("\x00", "")[:MAX_MESSAGE]
        update = ProgressUpdate(figures[0], figures[1], message)
        with self._shared.lock:
            self._shared.pending = update
        self.check_cancelled()

    @property
    def cancelled(self) -> bool:
        return self._shared.cancelled.is_set()

    def check_cancelled(self) -> None:
        if self._shared.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    # Runner side.
    def take_progress(self) -> ProgressUpdate | None:
        with self._shared.lock:
            update, self._shared.pending = self._shared.pending, None
        return update

    def restore_progress(self, update: ProgressUpdate) -> None:
        """Put back figures that could not be written, unless newer ones arrived meanwhile."""
        with self._shared.lock:
            if self._shared.pending is None:
                self._shared.pending = update

    def mark_cancelled(self) -> None:
        self._shared.cancelled.set()
