"""Job events: the model watchers receive, and the bus that carries them over Redis.

Every status or progress write bumps the job's `seq` in Postgres, in the same UPDATE, so seq is
allocated atomically and increases strictly per job. After the write commits, its event is
appended to the job's Redis Stream (kept for replay) and published on one channel (for live
delivery). Publishing is best effort: Postgres stays the record, and a watcher that misses an
event catches up from the stream or from a fresh snapshot.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.db.models import Job
from shared.jobs.schemas import JobErrorInfo, Progress
from shared.jobs.states import JobStatus, is_terminal
from shared.keys import JOB_METRICS, event_stream, events_channel, redis_db
from shared.metrics import increments

log = logging.getLogger("jobq.events")

EventType = Literal["snapshot", "progress", "status"]
STREAM_MAXLEN = 1000

# One call for a batch of events and the metrics they imply: each event is appended to its
# job's stream (trimmed, its expiry renewed) and published, then each increment is applied.
# The same commands as a pipeline of them, at about a third of the client's CPU per batch (the
# client packs and parses one command instead of three per event and one per metric).
# KEYS: the metrics hash, then each event's stream. ARGV: channel, maxlen, retention, the number
# of events, each event's data, then (i|f, field, amount) for each increment.
SEND_SCRIPT = """
local channel, maxlen, retention, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
for n = 1, count do
  local data = ARGV[4 + n]
  redis.call('XADD', KEYS[1 + n], 'MAXLEN', '~', maxlen, '*', 'e', data)
  redis.call('EXPIRE', KEYS[1 + n], retention)
  redis.call('PUBLISH', channel, data)
end
for n = 5 + count, #ARGV, 3 do
  if ARGV[n] == 'i' then
    redis.call('HINCRBY', KEYS[1], ARGV[n + 1], ARGV[n + 2])
  else
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[n + 1], ARGV[n + 2])
  end
end
return count
"""


class JobEvent(BaseModel):
    type: EventType
    job_id: uuid.UUID
    seq: int
    status: JobStatus
    progress: Progress | None = None
    result: dict[str, Any] | None = None
    error: JobErrorInfo | None = None
    ts: datetime

    @property
    def terminal(self) -> bool:
        return self.type == "status" and is_terminal(self.status)

    @classmethod
    def of(cls, job: Job, type: EventType, seq: int | None = None) -> JobEvent:
        return cls(
            type=type,
            job_id=job.id,
            seq=job.seq if seq is None else seq,
            status=JobStatus(job.status),
            progress=job.progress,
            result=job.result,
            error=job.error,
            ts=datetime.now(UTC),
        )


class Envelope(BaseModel):
    """What travels on Redis: the event and who may see it."""

    owner: str
    event: JobEvent


class EventBus:
    def __init__(self, redis: Redis, retention_seconds: int) -> None:
        self.redis = redis
        self.retention = retention_seconds
        self.channel = events_channel(redis_db(redis))
        self._script = redis.register_script(SEND_SCRIPT)

    async def publish(self, owner: str, *events: JobEvent) -> None:
        """Append to each job's stream and broadcast. Never raises: Postgres is the record."""
        await self._send([(owner, event) for event in events])

    async def moved(self, *jobs: Job, ran: bool = True) -> None:
        """Announce committed status changes: each job's status event, and the job metrics
        its transition implies (see shared.metrics), in one round trip. `ran`: the jobs left
        the running state (False for jobs cancelled while queued)."""
        await self._send([(job.owner, JobEvent.of(job, "status")) for job in jobs], jobs, ran)

    async def _send(
        self, events: list[tuple[str, JobEvent]], moved: Sequence[Job] = (), ran: bool = True
    ) -> None:
        if not events:
            return
        keys: list[str] = [JOB_METRICS]
        args: list[str | int | float] = [self.channel, STREAM_MAXLEN, self.retention, len(events)]
        for owner, event in events:
            keys.append(event_stream(event.job_id))
            args.append(Envelope(owner=owner, event=event).model_dump_json())
        for job in moved:
            for name, amount in increments(job, ran=ran):
                args += ("i" if isinstance(amount, int) else "f", name, amount)
        try:
            await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            log.warning("could not publish %d event(s): %s", len(events), exc)

    async def replay(self, job_id: uuid.UUID, after: int) -> list[JobEvent] | None:
        """Retained events with seq > after, in order; None if some of them are gone."""
        entries = await self.redis.xrange(event_stream(job_id)) or []
        events = sorted(
            (Envelope.model_validate_json(fields[b"e"]).event for _, fields in entries if fields),
            key=lambda event: event.seq,
        )
        newer = [event for event in events if event.seq > after]
        expected = list(range(after + 1, after + 1 + len(newer)))
        if [event.seq for event in newer] != expected:
            return None
        if after > 0 and not newer and (not events or events[-1].seq < after):
            return None
        return newer
