"""The models that cross process boundaries: what clients send and what they get back."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)

from shared.jobs.states import ErrorType, JobStatus, Lane, Priority

MAX_ATTEMPTS_LIMIT = 20


class JobSubmission(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"kind": "echo", "params": {"message": "hello"}},
                {"kind": "sleep", "params": {"seconds": 5, "steps": 5}, "priority": "high"},
                {"kind": "primes", "params": {"limit": 1000000}, "delay_seconds": 30},
            ]
        },
    )

    kind: str = Field(min_length=1, max_length=100, description="A kind listed by GET /kinds.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Checked against the kind's params_schema."
    )
    priority: Priority = Priority.NORMAL
    run_at: AwareDatetime | None = Field(
        default=None, description="Not before this time (ISO 8601 with offset)."
    )
    delay_seconds: float | None = Field(default=None, ge=0, le=30 * 24 * 3600)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    timeout_seconds: float | None = Field(default=None, gt=0)
    webhook_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> JobSubmission:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self

    @field_validator("run_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        return None if value is None else in_range(value)


class Progress(BaseModel):
    current: float
    total: float | None
    percent: float | None
    message: str | None


class JobErrorInfo(BaseModel):
    type: ErrorType
    message: str


class WebhookStatus(BaseModel):
    """The latest notification of the job's end to its webhook_url."""

    model_config = ConfigDict(from_attributes=True)

    state: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    lane: Lane
    status: JobStatus
    params: dict[str, Any]
    priority: Priority
    progress: Progress | None
    result: dict[str, Any] | None
    error: JobErrorInfo | None
    attempts: int
    max_attempts: int
    timeout_seconds: float
    owner: str
    created_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    webhook_url: str | None
    webhook: WebhookStatus | None = Field(
        default=None, description="Delivery of the end-of-job webhook (on GET /jobs/{id})."
    )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class KindOut(BaseModel):
    kind: str
    lane: Lane
    description: str
    default_timeout: float
    max_timeout: float
    max_attempts: int
    params_schema: dict[str, Any]
    result_schema: dict[str, Any]


class Status(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    # Celery workers with a recent heartbeat (None if Redis could not tell). Informative:
    # an API without workers still serves, and queues heavy jobs until one comes back.
    workers_alive: int | None = None


class Stats(BaseModel):
    """The dashboard's summary: the caller's jobs by status, and the shared queue figures."""

    jobs: dict[JobStatus, int] = Field(
        description="Jobs by status, counting those the caller may see (admins: all)."
    )
    queue_depth: int | None = Field(
        description="Messages waiting in the Celery queues; null if the broker did not answer."
    )
    queues: dict[str, int] = Field(description="Messages waiting in each Celery queue.")
    workers_alive: int | None = Field(
        description="Celery workers with a recent heartbeat; null if Redis did not answer."
    )
    flower_url: str = Field(description="Where Flower, the worker monitor, answers.")


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_range(value: datetime) -> datetime:
    """The time as given; ValueError for one outside 1970..9000 (or without an offset)."""
    try:
        moment = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("time out of range") from None
    if value.tzinfo is None or not EARLIEST <= moment < LATEST:
        raise ValueError("time must have an offset and lie between 1970 and 9000")
    return value


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(job_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError on anything that is not a cursor this API made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not (isinstance(payload, list) and len(payload) == 2):
            raise ValueError("not a cursor")
        created, job_id = payload
        if not (isinstance(created, str) and isinstance(job_id, str)):
            raise ValueError("not a cursor")
        return in_range(datetime.fromisoformat(created)), uuid.UUID(job_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
