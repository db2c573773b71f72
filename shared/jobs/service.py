"""Business rules for jobs. Never commits: the edge that called it owns the transaction."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from shared.db.models import Job
from shared.db.repository import JobRepository
from shared.errors import Conflict, InvalidSubmission, NotFound, StaleAttempt, TooManyRequests
from shared.jobs.outcome import storable
from shared.jobs.registry import Registry
from shared.jobs.schemas import JobSubmission, decode_cursor, encode_cursor
from shared.jobs.states import JobStatus, is_terminal


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's subject, and whether it may see every job."""

    subject: str
    admin: bool = False

    @property
    def owner_filter(self) -> str | None:
        return None if self.admin else self.subject


IDEMPOTENCY_TTL = timedelta(hours=24)
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def request_hash(submission: JobSubmission) -> str:
    """What identifies a request body for Idempotency-Key replays."""
    canonical = json.dumps(
        submission.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def over_quota(active: int) -> TooManyRequests:
    return TooManyRequests(
        f"{active} of your jobs are queued or running, the most allowed at once;"
        " wait for some to finish",
        headers={"Retry-After": "30"},
    )


def check_idempotency_key(key: str) -> None:
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidSubmission(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": ["header", "idempotency-key"],
                    "msg": "Idempotency-Key must be 1 to 255 printable ASCII characters",
                }
            ]
        )


def key_reused() -> InvalidSubmission:
    return InvalidSubmission(
        [
            {
                "type": "idempotency_key_reused",
                "loc": ["header", "idempotency-key"],
                "msg": "this Idempotency-Key was used with a different request body",
            }
        ]
    )


def original_gone() -> Conflict:
    return Conflict("the job this Idempotency-Key made no longer exists; use a new key")


def validation_errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """Pydantic's error list, located under `prefix`, JSON-safe."""
    errors = []
    for error in exc.errors(include_url=False, include_context=False):
        item = {"type": error["type"], "loc": [*prefix, *error["loc"]], "msg": error["msg"]}
        if "input" in error and storable(error["input"]):
            item["input"] = error["input"]
        errors.append(item)
    return errors


def prepare_job(
    registry: Registry,
    principal: Principal,
    submission: JobSubmission,
    now: datetime | None = None,
    *,
    job_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> Job:
    """The job a submission makes, validated against its kind; not yet in any session.
    Raises InvalidSubmission."""
    now = now or utcnow()
    kind = registry.get(submission.kind)
    if kind is None:
        raise InvalidSubmission(
            [
                {
                    "type": "unknown_kind",
                    "loc": ["body", "kind"],
                    "msg": f"unknown job kind {submission.kind!r}; GET /kinds lists them",
                    "input": submission.kind,
                }
            ]
        )
    try:
        params = kind.params.model_validate(submission.params)
    except ValidationError as exc:
        raise InvalidSubmission(validation_errors(exc, ("body", "params"))) from None
    stored_params = params.model_dump(mode="json")
    if not storable(stored_params):
        raise InvalidSubmission(
            [
                {
                    "type": "value_error",
                    "loc": ["body", "params"],
                    "msg": "params may not contain NUL characters, NaN or infinity",
                }
            ]
        )
    timeout = submission.timeout_seconds or kind.default_timeout
    if timeout > kind.max_timeout:
        raise InvalidSubmission(
            [
                {
                    "type": "less_than_equal",
                    "loc": ["body", "timeout_seconds"],
                    "msg": f"Input should be at most {kind.max_timeout:g} for {kind.name}",
                    "input": submission.timeout_seconds,
                }
            ]
        )
    if submission.run_at is not None:
        run_at = max(submission.run_at.astimezone(UTC), now)
    else:
        run_at = now + timedelta(seconds=submission.delay_seconds or 0)
    return Job(
        id=job_id or uuid.uuid4(),
        owner=principal.subject,
        kind=kind.name,
        lane=kind.lane.value,
        status=JobStatus.QUEUED.value,
        priority=submission.priority.value,
        params=stored_params,
        progress=None,
        result=None,
        error=None,
        attempts=0,
        seq=1,
        max_attempts=submission.max_attempts or kind.retry.max_attempts,
        timeout_seconds=timeout,
        cancel_requested=False,
        webhook_url=str(submission.webhook_url) if submission.webhook_url else None,
        created_at=now,
        run_at=run_at,
        # Due now: the caller hands it to an executor right after commit. Later: the
        # dispatcher sends it when due.
        dispatched_at=now if run_at <= now else None,
        dispatches=1 if run_at <= now else 0,
        request_id=request_id,
    )


class JobService:
    def __init__(
        self,
        repository: JobRepository,
        registry: Registry,
        *,
        max_active: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.repository = repository
        self.registry = registry
        self.max_active = max_active
        # Stored on the jobs this service creates, so their log lines name the request.
        self.request_id = request_id

    async def submit(
        self,
        principal: Principal,
        submission: JobSubmission,
        now: datetime | None = None,
        *,
        job_id: uuid.UUID | None = None,
    ) -> Job:
        """Validate against the kind and insert the job row (uncommitted)."""
        job = prepare_job(
            self.registry, principal, submission, now, job_id=job_id, request_id=self.request_id
        )
        if self.max_active is not None:
            active = await self.repository.count_active(principal.subject)
            if active >= self.max_active:
                raise over_quota(active)
        return await self.repository.add(job)

    async def get(self, principal: Principal, job_id: uuid.UUID) -> Job:
        job = await self.repository.get(job_id, owner=principal.owner_filter)
        if job is None:
            raise NotFound()
        return job

    async def page(
        self,
        principal: Principal,
        *,
        status: JobStatus | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[Job], str | None]:
        after = None
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                raise InvalidSubmission(
                    [{"type": "value_error", "loc": ["query", "cursor"], "msg": "invalid cursor"}]
                ) from None
        jobs = await self.repository.page(
            owner=principal.owner_filter, status=status, kind=kind, limit=limit + 1, after=after
        )
        if len(jobs) <= limit:
            return jobs, None
        jobs = jobs[:limit]
        return jobs, encode_cursor(jobs[-1].created_at, jobs[-1].id)

    async def cancel(
        self, principal: Principal, job_id: uuid.UUID, now: datetime | None = None
    ) -> Job:
        """Queued: cancelled at once. Running: flagged; its attempt stops. Terminal: Conflict."""
        job = await self.get(principal, job_id)
        for _ in range(3):
            if is_terminal(JobStatus(job.status)):
                raise Conflict(f"job is already {job.status}")
            if job.status == JobStatus.QUEUED:
                try:
                    return await self.repository.cancel_queued(job_id, now or utcnow())
                except StaleAttempt:
                    pass
            else:
                flagged = await self.repository.request_cancel(job_id)
                if flagged is not None:
                    return flagged
            # The job moved between our read and our write: look again.
            job = await self.get(principal, job_id)
        raise Conflict("the job is changing state; try again")

    async def retry(self, principal: Principal, job_id: uuid.UUID) -> Job:
        """A finished job's kind and params, as a new job owned by the caller."""
        job = await self.get(principal, job_id)
        if not is_terminal(JobStatus(job.status)):
            raise Conflict(f"job is {job.status}; only a finished job can be retried")
        submission = JobSubmission(
            kind=job.kind,
            params=job.params,
            priority=job.priority,
            max_attempts=job.max_attempts,
            timeout_seconds=job.timeout_seconds,
            webhook_url=job.webhook_url,
        )
        return await self.submit(Principal(job.owner), submission)
