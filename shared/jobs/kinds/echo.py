"""echo: returns its message. A quick job, run in the API process."""

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind, RetryPolicy
from shared.jobs.states import Lane


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=1000, examples=["hello"])


class EchoResult(BaseModel):
    message: str


async def echo(ctx: JobContext, params: EchoParams) -> EchoResult:
    ctx.progress(1, 1)
    return EchoResult(message=params.message)


kind = JobKind(
    name="echo",
    lane=Lane.QUICK,
    params=EchoParams,
    result=EchoResult,
    handler=echo,
    description="Return the message it was given.",
    default_timeout=10,
    max_timeout=60,
    retry=RetryPolicy(max_attempts=3, backoff_base=0.5),
)
