"""Reading a job for its watchers: one query serves every watcher that needs the job as of the
same moment, so a thousand watchers catching up at once cost one read, not a thousand."""

from __future__ import annotations

import asyncio
import uuid

from shared.db.engine import SessionFactory
from shared.db.models import Job
from shared.db.repository import JobRepository

MAX_ENTRIES = 10_000


class JobReader:
    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        # job id -> (loop time the read started, the read)
        self._reads: dict[uuid.UUID, tuple[float, asyncio.Future[Job | None]]] = {}

    async def get(self, job_id: uuid.UUID, not_before: float) -> Job | None:
        """The job as read by a query that started at or after `not_before` (loop time).

        A watcher passes the moment it subscribed, or learned it missed events: any read that
        began after that moment shows everything it could have missed.
        """
        loop = asyncio.get_running_loop()
        entry = self._reads.get(job_id)
        failed = entry is not None and entry[1].done() and entry[1].exception() is not None
        if entry is None or entry[0] < not_before or failed:
            if len(self._reads) >= MAX_ENTRIES:
                self._forget_before(not_before)
            entry = (loop.time(), asyncio.ensure_future(self._read(job_id)))
            self._reads[job_id] = entry
        # Shielded: one asker giving up must not cancel the read for the others.
        return await asyncio.shield(entry[1])

    async def _read(self, job_id: uuid.UUID) -> Job | None:
        async with self.sessions() as session:
            return await JobRepository(session).get(job_id)

    def _forget_before(self, moment: float) -> None:
        for job_id in [key for key, (started, _) in self._reads.items() if started < moment]:
            del self._reads[job_id]
