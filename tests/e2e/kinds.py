"""Extra job kinds the end-to-end tests load through JOBQ_KIND_MODULES."""

import asyncio
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


stubborn_kind = JobKind(
    name="stubborn",
    lane=Lane.HEAVY,
    params=StubbornParams,
    result=StubbornResult,
    handler=stubborn,
    description="A synchronous handler that ignores cancellation.",
    default_timeout=60,
    max_timeout=120,
)


class NapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=120)


class NapResult(BaseModel):
    napped: float


async def nap(ctx: JobContext, params: NapParams) -> NapResult:
    """A quick-lane job that takes a while, for killing the API under it."""
    steps = max(1, int(params.seconds * 10))
    for step in range(steps):
        await asyncio.sleep(params.seconds / steps)
        ctx.progress(step + 1, steps)
    return NapResult(napped=params.seconds)


nap_kind = JobKind(
    name="nap",
    lane=Lane.QUICK,
    params=NapParams,
    result=NapResult,
    handler=nap,
    description="Sleep in the API process.",
    default_timeout=60,
    max_timeout=120,
)

kinds = [stubborn_kind, nap_kind]
