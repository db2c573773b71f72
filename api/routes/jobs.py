"""Submitting, reading, listing, cancelling and retrying jobs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Response, status

from api.deps import CurrentPrincipal, JobServiceDep, ServicesDep, SessionDep
from shared.db.models import Job
from shared.events import JobEvent
from shared.jobs.schemas import JobOut, JobPage, JobSubmission
from shared.jobs.states import JobStatus, Lane

router = APIRouter(prefix="/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such job, or not yours."}}


async def _start(job: Job, services: ServicesDep, background: BackgroundTasks) -> None:
    """Announce a just-committed job and hand it to its executor if it is due.

    Delayed jobs wait for the dispatcher.
    """
    await services.events.publish(job.owner, JobEvent.of(job, "status"))
    if job.dispatched_at is None:
        return
    if job.lane == Lane.QUICK:
        background.add_task(services.local.run, job.id)
    else:
        await services.dispatcher.hand_over([job])


def _accepted(job: Job, response: Response) -> JobOut:
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobOut.model_validate(job)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={422: {"description": "Unknown kind, bad params or unknown fields."}},
)
async def submit_job(
    body: JobSubmission,
    principal: CurrentPrincipal,
    jobs: JobServiceDep,
    session: SessionDep,
    services: ServicesDep,
    background: BackgroundTasks,
    response: Response,
) -> JobOut:
    """Queue a job. A 202 means the job is committed to Postgres and will reach an end state."""
    job = await jobs.submit(principal, body)
    await session.commit()
    await _start(job, services, background)
    return _accepted(job, response)


@router.get("", response_model=JobPage)
async def list_jobs(
    principal: CurrentPrincipal,
    jobs: JobServiceDep,
    status: JobStatus | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> JobPage:
    """Your jobs, newest first (admins: everyone's). Follow `next_cursor` for older ones."""
    items, next_cursor = await jobs.page(
        principal, status=status, kind=kind, limit=limit, cursor=cursor
    )
    return JobPage(items=[JobOut.model_validate(job) for job in items], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
async def get_job(job_id: uuid.UUID, principal: CurrentPrincipal, jobs: JobServiceDep) -> JobOut:
    return JobOut.model_validate(await jobs.get(principal, job_id))


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={**NOT_FOUND, 409: {"description": "The job has already finished."}},
)
async def cancel_job(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    jobs: JobServiceDep,
    session: SessionDep,
    services: ServicesDep,
) -> JobOut:
    """A queued job is cancelled at once; a running one stops within a few seconds."""
    job = await jobs.cancel(principal, job_id)
    await session.commit()
    if job.status == JobStatus.CANCELLED:
        await services.events.publish(job.owner, JobEvent.of(job, "status"))
    return JobOut.model_validate(job)


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={**NOT_FOUND, 409: {"description": "The job has not finished yet."}},
)
async def retry_job(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    jobs: JobServiceDep,
    session: SessionDep,
    services: ServicesDep,
    background: BackgroundTasks,
    response: Response,
) -> JobOut:
    """Submit a finished job's kind and params again, as a new job."""
    job = await jobs.retry(principal, job_id)
    await session.commit()
    await _start(job, services, background)
    return _accepted(job, response)
