"""notify: records a notification for an address (nothing is really mailed)."""

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind, RetryPolicy
from shared.jobs.states import Lane


class NotifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr = Field(examples=["alice@example.com"])
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10000)


class NotifyResult(BaseModel):
    delivered_to: EmailStr


async def notify(ctx: JobContext, params: NotifyParams) -> NotifyResult:
    ctx.progress(1, 1, f"recorded for {params.email}")
    return NotifyResult(delivered_to=params.email)


kind = JobKind(
    name="notify",
    lane=Lane.QUICK,
    params=NotifyParams,
    result=NotifyResult,
    handler=notify,
    description="Record a notification to an email address (not really mailed).",
    default_timeout=10,
    max_timeout=60,
    retry=RetryPolicy(max_attempts=3, backoff_base=1.0),
)
