"""Extra job kinds the end-to-end tests load through JOBQ_KIND_MODULES."""

import time

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind
from shared.jobs.states import Lane


class StubbornParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=120)


class StubbornResult(BaseModel):
    slept: float


def stubborn(ctx: JobContext, params: StubbornParams) -> StubbornResult:
    """Never reports progress nor checks for cancellation."""
    time.sleep(params.seconds)
    return StubbornResult(slept=params.seconds)


kind = JobKind(
    name="stubborn",
    lane=Lane.HEAVY,
    params=StubbornParams,
    result=StubbornResult,
    handler=stubborn,
    description="A synchronous handler that ignores cancellation.",
    default_timeout=60,
    max_timeout=120,
)
