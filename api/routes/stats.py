"""GET /stats: the dashboard's summary strip."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from shared.db.repository import JobRepository
from shared.jobs.schemas import Stats
from shared.jobs.states import JobStatus
from shared.settings import Settings

router = APIRouter(tags=["operations"])

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
HOSTNAME = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
# However many dashboards poll, each API process reads the shared figures this often at most.
FIGURES_MAX_AGE = 2.0


@router.get("/stats", response_model=Stats)
async def stats(
    request: Request, principal: CurrentPrincipal, session: SessionDep, services: ServicesDep
) -> Stats:
    """Your jobs by status (admins: everyone's), queue depth and live workers, Flower's URL."""
    counts, shared = await asyncio.gather(
        JobRepository(session).count_by_status(principal.owner_filter),
        services.metrics.snapshot(FIGURES_MAX_AGE),
    )
    depth = None if "queues" in shared.errors else sum(shared.queues.values())
    return Stats(
        jobs={status: counts.get(status, 0) for status in JobStatus},
        queue_depth=depth,
        queues=shared.queues,
        workers_alive=shared.workers,
        flower_url=flower_url(services.settings, request.url.hostname),
    )


def flower_url(settings: Settings, request_host: str | None) -> str:
    """Flower on its configured host; one bound to every interface is reached on the host the
    browser used for the API."""
    host = settings.flower_host
    if host in WILDCARD_HOSTS:
        host = request_host if request_host and HOSTNAME.match(request_host) else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.flower_port}"
