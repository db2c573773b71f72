"""sleep: waits, reporting progress at each step. A heavy job, run on a Celery worker."""

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind
from shared.jobs.states import Lane


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=3600, examples=[5])
    steps: int = Field(default=10, ge=1, le=1000)


class SleepResult(BaseModel):
    slept: float


async def sleep(ctx: JobContext, params: SleepParams) -> SleepResult:
    step = params.seconds / params.steps
    for done in range(1, params.steps + 1):
        await asyncio.sleep(step)
        ctx.progress(done, params.steps, f"step {done}/{params.steps}")
    return SleepResult(slept=params.seconds)


kind = JobKind(
    name="sleep",
    lane=Lane.HEAVY,
    params=SleepParams,
    result=SleepResult,
    handler=sleep,
    description="Sleep for `seconds`, reporting progress at each of `steps` steps.",
    default_timeout=3700,
    max_timeout=3700,
)
