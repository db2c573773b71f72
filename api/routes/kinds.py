"""The job kinds this deployment runs, with their JSON Schemas."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentPrincipal, ServicesDep
from shared.jobs.schemas import KindOut

router = APIRouter(tags=["kinds"])


@router.get("/kinds", response_model=list[KindOut])
async def list_kinds(services: ServicesDep, principal: CurrentPrincipal) -> list[KindOut]:
    return [
        KindOut(
            kind=kind.name,
            lane=kind.lane,
            description=kind.description,
            default_timeout=kind.default_timeout,
            max_timeout=kind.max_timeout,
            max_attempts=kind.retry.max_attempts,
            params_schema=kind.params.model_json_schema(),
            result_schema=kind.result.model_json_schema(),
        )
        for kind in services.registry
    ]
