"""The floor under jobq's POST /jobs: FastAPI serving the same route shape with jobq's own models
and no I/O at all. The same body is validated as `JobSubmission`, a bearer header is read by an
async dependency, the `Idempotency-Key` header is declared, and a `JobOut` is built and
serialized; nothing is stored, published or logged. What FastAPI and Pydantic alone cost for
this request, served by the same uvicorn with the same settings: jobq cannot be faster than it
without leaving FastAPI's request handling."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Response, status

from shared.jobs.schemas import JobOut, JobSubmission
from shared.jobs.states import JobStatus, Lane

app = FastAPI()


async def subject(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required")
    return token[:16]


@app.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
async def submit_job(
    body: JobSubmission,
    owner: Annotated[str, Depends(subject)],
    background: BackgroundTasks,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JobOut:
    now = datetime.now(UTC)
    job = JobOut(
        id=uuid.uuid4(),
        kind=body.kind,
        lane=Lane.HEAVY,
        status=JobStatus.QUEUED,
        params=body.params,
        priority=body.priority,
        progress=None,
        result=None,
        error=None,
        attempts=0,
        max_attempts=body.max_attempts or 3,
        timeout_seconds=body.timeout_seconds or 60.0,
        owner=owner,
        created_at=now,
        run_at=now,
        started_at=None,
        finished_at=None,
        cancel_requested=False,
        webhook_url=None,
    )
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
