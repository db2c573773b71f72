"""What an attempt's end means for its job. Pure code: no I/O."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.errors import JobCancelled, PermanentError
from shared.jobs.states import ErrorType, JobStatus

MAX_ERROR_MESSAGE = 2000


class Stop(StrEnum):
    """Why the runner told the handler to stop."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"


class Outcome(StrEnum):
    SKIPPED = "skipped"  # not claimable: already taken, cancelled or finished
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    STALE = "stale"  # the attempt lost ownership of the job before it finished


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    target: JobStatus  # QUEUED means: retry after `retry_in` seconds
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_in: float = 0.0


def error(kind: ErrorType, message: str) -> dict[str, Any]:
    return {"type": kind.value, "message": message[:MAX_ERROR_MESSAGE]}


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def storable(value: Any) -> bool:
    """Whether Postgres' jsonb takes it: finite numbers, no NUL characters, valid Unicode."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # lone surrogates cannot be encoded
    except (TypeError, ValueError):
        return False
    return "\\u0000" not in text


def decide(
    task: asyncio.Future[Any],
    stop: Stop | None,
    *,
    result_model: type[BaseModel],
    attempt: int,
    max_attempts: int,
    timeout: float,
    retry_delay: float,
) -> Decision:
    """The outcome of an attempt from its handler's task and any stop the runner asked for.

    A handler that finished with a result succeeded, even if a cancel came late. Otherwise a
    cancel or timeout the runner asked for decides, whatever the handler raised on its way out.
    """
    finished = task.done() and not task.cancelled()
    exc = task.exception() if finished else None
    if finished and exc is None:
        try:
            result = result_model.model_validate(task.result()).model_dump(mode="json")
        except ValidationError as invalid:
            return _failed(f"handler returned an invalid result: {invalid}")
        if not storable(result):
            return _failed("handler returned a result that cannot be stored (NaN, infinity or NUL)")
        if stop is not Stop.TIMEOUT:
            return Decision(Outcome.SUCCEEDED, JobStatus.SUCCEEDED, result=result)
    if stop is Stop.TIMEOUT:
        message = f"exceeded its timeout of {timeout:g}s"
        return Decision(
            Outcome.TIMED_OUT, JobStatus.FAILED, error=error(ErrorType.TIMEOUT, message)
        )
    if stop is Stop.CANCEL or isinstance(exc, JobCancelled) or not finished:
        return Decision(
            Outcome.CANCELLED,
            JobStatus.CANCELLED,
            error=error(ErrorType.CANCELLED, "cancelled while running"),
        )
    assert exc is not None
    if isinstance(exc, PermanentError) or attempt >= max_attempts:
        return _failed(describe(exc))
    return Decision(
        Outcome.RETRYING,
        JobStatus.QUEUED,
        error=error(ErrorType.ERROR, describe(exc)),
        retry_in=retry_delay,
    )


def _failed(message: str) -> Decision:
    return Decision(Outcome.FAILED, JobStatus.FAILED, error=error(ErrorType.ERROR, message))
