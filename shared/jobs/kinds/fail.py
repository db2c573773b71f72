"""fail: raises on its first `fail_times` attempts, then succeeds. For exercising retries."""

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import PermanentError
from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind, RetryPolicy
from shared.jobs.states import Lane


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(default="failed on purpose", max_length=1000)
    fail_times: int | None = Field(
        default=None, ge=0, description="Attempts that fail before one succeeds; null: all."
    )
    retryable: bool = True


class FailResult(BaseModel):
    attempts: int


async def fail(ctx: JobContext, params: FailParams) -> FailResult:
    if params.fail_times is None or ctx.attempt <= params.fail_times:
        if params.retryable:
            raise RuntimeError(params.message)
        raise PermanentError(params.message)
    return FailResult(attempts=ctx.attempt)


kind = JobKind(
    name="fail",
    lane=Lane.HEAVY,
    params=FailParams,
    result=FailResult,
    handler=fail,
    description="Fail on the first `fail_times` attempts (all, if null), then succeed.",
    default_timeout=60,
    max_timeout=600,
    retry=RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=30.0),
)
