"""Submitting, reading, listing, cancelling and retrying jobs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response, status

from api.deps import CurrentPrincipal, JobServiceDep, Services, ServicesDep, SessionDep
from shared.db.models import Job
from shared.errors import InvalidSubmission, Unavailable
from shared.jobs.schemas import JobOut, JobPage, JobSubmission, WebhookStatus
from shared.jobs.service import check_idempotency_key, prepare_job, request_hash
from shared.jobs.states import JobStatus, Lane
from shared.webhooks import RefusedTarget, check_target, latest_delivery

router = APIRouter(prefix="/jobs", tags=["jobs"])

KIND_PATTERN = r"^[A-Za-z0-9_.]+$"

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such job, or not yours."}}


def check_broker(services: Services, kind: str) -> None:
    """Refuse a heavy job while the broker is known to be down: 503, not a 202 to hold."""
    spec = services.registry.get(kind)
    if spec is not None and spec.lane == Lane.HEAVY and not services.dispatcher.publisher.healthy:
        raise Unavailable("the job queue is unreachable; try again shortly")


async def check_webhook(services: Services, url: object) -> None:
    """Refuse a webhook_url that points inside the network (unless allowed): 422."""
    if url is None:
        return
    allow = services.settings.webhook_allow_private
    try:
        await asyncio.to_thread(check_target, str(url), allow_private=allow)
    except RefusedTarget as exc:
        raise InvalidSubmission(
            [{"type": "value_error", "loc": ["body", "webhook_url"], "msg": str(exc)}]
        ) from None


class Launch:
    """Commits a retried job, announces it, and hands it to its executor if it is due.

    Heavy jobs go to Celery only after the commit; quick ones run on BackgroundTasks once the
    response is sent; delayed ones wait for the dispatcher.
    """

    def __init__(
        self,
        session: SessionDep,
        services: ServicesDep,
        background: BackgroundTasks,
        response: Response,
    ) -> None:
        self.session = session
        self.services = services
        self.background = background
        self.response = response

    async def accepted(self, job: Job) -> JobOut:
        await self.session.commit()
        if "after-commit" in self.services.settings.failpoints:
            os._exit(70)  # a crash between commit and dispatch, for the fault tests
        await self.services.events.moved(job)
        if job.dispatched_at is not None:
            if job.lane == Lane.QUICK:
                self.background.add_task(self.services.local.run, job.id)
            else:
                await self.services.dispatcher.hand_over([job])
        self.response.headers["Location"] = f"/jobs/{job.id}"
        return JobOut.model_validate(job)


async def get_launch(
    session: SessionDep, services: ServicesDep, background: BackgroundTasks, response: Response
) -> Launch:
    return Launch(session, services, background, response)  # async: no thread hop (api/deps.py)


LaunchDep = Annotated[Launch, Depends(get_launch)]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={
        200: {"model": JobOut, "description": "An Idempotency-Key replay: the original job."},
        422: {"description": "Unknown kind, bad params, unknown fields, or a reused key."},
    },
)
async def submit_job(
    body: JobSubmission,
    principal: CurrentPrincipal,
    services: ServicesDep,
    request: Request,
    background: BackgroundTasks,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(description="Repeat the same key with the same body to get the same job back."),
    ] = None,
) -> JobOut:
    """Queue a job. A 202 means the job is committed to Postgres and will reach an end state.

    With an `Idempotency-Key` already used (by you, within 24 hours) for the same body, the
    original job comes back with 200 and `Idempotent-Replayed: true`; for another body, 422.
    """
    check_broker(services, body.kind)
    await check_webhook(services, body.webhook_url)
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    job = prepare_job(
        services.registry,
        principal,
        body,
        request_id=getattr(request.state, "request_id", None),
    )
    # Committed with whatever other submissions arrive meanwhile (shared/jobs/intake.py).
    job, replayed = await services.intake.submit(
        job,
        idempotency_key,
        None if idempotency_key is None else request_hash(body),
    )
    response.headers["Location"] = f"/jobs/{job.id}"
    if not replayed:
        if job.lane == Lane.QUICK and job.dispatched_at is not None:
            background.add_task(services.local.run, job.id)
        return JobOut.model_validate(job)
    response.status_code = status.HTTP_200_OK
    response.headers["Idempotent-Replayed"] = "true"
    return JobOut.model_validate(job)


@router.get("", response_model=JobPage)
async def list_jobs(
    principal: CurrentPrincipal,
    jobs: JobServiceDep,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> JobPage:
    """Your jobs, newest first (admins: everyone's). Follow `next_cursor` for older ones."""
    items, next_cursor = await jobs.page(
        principal, status=status, kind=kind, limit=limit, cursor=cursor
    )
    return JobPage(items=[JobOut.model_validate(job) for job in items], next_cursor=next_cursor)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={**NOT_FOUND, 304: {"description": "Unchanged since the ETag you sent."}},
)
async def get_job(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    jobs: JobServiceDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The job. Send its `ETag` back as `If-None-Match` to get 304 while it is unchanged."""
    job = JobOut.model_validate(await jobs.get(principal, job_id))
    if job.webhook_url:
        delivery = await latest_delivery(jobs.repository.session, job.id)
        job.webhook = WebhookStatus.model_validate(delivery) if delivery else None
    body = job.model_dump_json().encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    # If-None-Match compares weakly: W/"x" matches "x".
    sent = {tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")}
    if etag in sent or "*" in sent:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


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
        await services.events.moved(job, ran=False)
    return JobOut.model_validate(job)


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={**NOT_FOUND, 409: {"description": "The job has not finished yet."}},
)
async def retry_job(
    job_id: uuid.UUID, principal: CurrentPrincipal, jobs: JobServiceDep, launch: LaunchDep
) -> JobOut:
    """Submit a finished job's kind and params again, as a new job."""
    return await launch.accepted(await jobs.retry(principal, job_id))
