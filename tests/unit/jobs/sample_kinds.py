"""An extra job kind module, loaded by name in test_registry (like JOBQ_KIND_MODULES)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind
from shared.jobs.states import Lane


class TextParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class TextResult(BaseModel):
    text: str


async def upper(ctx: JobContext, params: TextParams) -> TextResult:
    return TextResult(text=params.text.upper())


async def reverse(ctx: JobContext, params: TextParams) -> TextResult:
    return TextResult(text=params.text[::-1])


kinds = [
    JobKind(
        name="sample.upper",
        lane=Lane.QUICK,
        params=TextParams,
        result=TextResult,
        handler=upper,
        description="Upper-case the text.",
    ),
    JobKind(
        name="sample.reverse",
        lane=Lane.HEAVY,
        params=TextParams,
        result=TextResult,
        handler=reverse,
        description="Reverse the text.",
    ),
]
