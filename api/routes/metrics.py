"""GET /metrics, for Prometheus."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import ServicesDep
from shared.errors import InvalidToken

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        401: {"description": "JOBQ_METRICS_TOKEN is set and the bearer token is not it."},
    },
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    """HTTP figures of every API process, and job, queue and worker figures shared by all."""
    expected = services.settings.metrics_token
    if expected is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.get_secret_value().encode()
        ):
            raise InvalidToken("GET /metrics needs the metrics token")
    # With several processes, reading their files is disk work: off the event loop.
    per_process = await asyncio.to_thread(services.process_metrics.exposition)
    body = per_process + await services.metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
