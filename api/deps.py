"""Dependencies, exported as Annotated aliases so route signatures read as types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.connections import StreamCounter
from api.hub import Hub
from api.metrics import ProcessMetrics, SharedMetrics
from api.ratelimit import RateLimiter
from api.snapshots import JobReader
from api.watchdog import Watchdog
from shared.db.engine import SessionFactory
from shared.db.repository import JobRepository
from shared.errors import InvalidToken
from shared.events import EventBus
from shared.jobs.dispatcher import Dispatcher
from shared.jobs.executor import LocalExecutor
from shared.jobs.intake import Intake
from shared.jobs.registry import Registry
from shared.jobs.service import JobService, Principal
from shared.settings import Settings
from shared.tokens import verify_token


@dataclass(frozen=True)
class Services:
    """Everything the lifespan builds once per process."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    registry: Registry
    redis: Redis
    local: LocalExecutor
    dispatcher: Dispatcher
    intake: Intake
    events: EventBus
    hub: Hub
    watchdog: Watchdog
    reader: JobReader
    ratelimiter: RateLimiter
    streams: StreamCounter
    process_metrics: ProcessMetrics
    metrics: SharedMetrics


# Dependencies are `async def` even when they never await: FastAPI runs a plain `def` one in
# a worker thread, a hop that costs more than the function.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="A JWT from `jobq token SUBJECT`.")


async def get_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    response: Response,
) -> Principal:
    """The caller, from their bearer token; each call counts against their rate limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken("missing bearer token")
    principal = verify_token(services.settings, credentials.credentials)
    response.headers.update(await services.ratelimiter.hit(principal.subject))
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_job_service(
    request: Request, session: SessionDep, services: ServicesDep
) -> JobService:
    return JobService(
        JobRepository(session),
        services.registry,
        max_active=services.settings.max_active_jobs_per_subject,
        request_id=getattr(request.state, "request_id", None),
    )


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
