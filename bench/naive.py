"""The baseline: a job API as the FastAPI + Celery tutorials write it.

POST /jobs validates the body with Pydantic, inserts a row with SQLAlchemy (async, asyncpg,
the engine's default pool), sends the Celery task with `task.delay(id)` from the endpoint, and
returns the id. No auth, no idempotency, no rate limit, no events, no outbox: what jobq adds on
top costs it time, and the benchmark shows how much. Configured from the environment:
NAIVE_DATABASE_URL (postgresql+asyncpg://...) and NAIVE_BROKER_URL (redis://...).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ.get("NAIVE_DATABASE_URL", "postgresql+asyncpg:///naive"))
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
celery = Celery("naive", broker=os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"))


class Base(DeclarativeBase):
    pass


class NaiveJob(Base):
    __tablename__ = "naive_jobs"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


@celery.task(name="naive.process")
def process(job_id: str) -> None:
    """What a worker would run; the submissions benchmark runs none."""


class JobIn(BaseModel):
    kind: str
    params: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/jobs", status_code=202)
async def submit(job: JobIn) -> dict[str, str]:
    async with SessionLocal() as session:
        row = NaiveJob(kind=job.kind, params=job.params)
        session.add(row)
        await session.commit()
    process.delay(str(row.id))
    return {"id": str(row.id), "status": "PENDING"}
