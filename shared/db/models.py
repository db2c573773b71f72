"""The tables. Postgres is the record of every job."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

JSON = dict[str, Any]


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(100))
    lane: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(10))
    params: Mapped[JSON] = mapped_column(JSONB)
    progress: Mapped[JSON | None] = mapped_column(JSONB)
    result: Mapped[JSON | None] = mapped_column(JSONB)
    error: Mapped[JSON | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Bumped by every write that watchers hear of (status and progress): each event's `seq`.
    seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the job was handed to an executor (Celery or the API's quick lane); null while
    # it waits in Postgres for its run_at, or for a retry.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How often it was handed over: a job no executor claims is handed over again, each time
    # after a longer wait, so a backlog never multiplies its messages.
    dispatches: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # A running attempt renews this while it lives; past it, the attempt is presumed dead.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The X-Request-ID of the request that created the job, so its log lines can be found.
    request_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
        CheckConstraint("lane IN ('quick', 'heavy')", name="lane"),
        CheckConstraint("priority IN ('low', 'normal', 'high')", name="priority"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        Index("ix_jobs_owner_created", "owner", text("created_at DESC"), text("id DESC")),
        Index("ix_jobs_created", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_jobs_owner_active",
            "owner",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index(
            "ix_jobs_unclaimed",
            "dispatched_at",
            postgresql_where=text("status = 'queued' AND dispatched_at IS NOT NULL"),
        ),
        Index(
            "ix_jobs_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        Index(
            "ix_jobs_finished",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        Index(
            "ix_jobs_due",
            "run_at",
            postgresql_where=text("status = 'queued' AND dispatched_at IS NULL"),
        ),
    )


class IdempotencyKey(Base):
    """A client's Idempotency-Key, per subject: which job it made, and from which body."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class WebhookDelivery(Base):
    """The notification of a job's end to its webhook_url: written with the terminal state, so
    it cannot be lost; delivered, with retries, by the workers."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )
