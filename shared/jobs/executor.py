"""The quick lane's executor: runs jobs as tasks on the API process's own event loop."""

from __future__ import annotations

import asyncio
import logging
import uuid

from shared.jobs.runner import Runner, RunReport

log = logging.getLogger("jobq.executor")


class LocalExecutor:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._tasks: set[asyncio.Task[RunReport | None]] = set()

    async def run(self, job_id: uuid.UUID) -> RunReport | None:
        """Run one job to its end here. Never raises: the record in Postgres is what counts.

        The job's task is tracked, so a shutdown drains it like the spawned ones.
        """
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        try:
            report = await self.runner.run(job_id)
        except Exception:
            log.exception("quick job %s could not be run", job_id)
            return None
        finally:
            if current is not None:
                self._tasks.discard(current)
        if report.abandoned_thread:
            log.warning("quick job %s left a handler thread running after it ended", job_id)
        return report

    def spawn(self, job_id: uuid.UUID) -> None:
        task = asyncio.create_task(self.run(job_id), name=f"jobq-quick-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> None:
        """Wait for spawned jobs to end, up to `grace` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
