"""What an attempt's end means for its job (shared/jobs/outcome.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from shared.errors import JobCancelled, PermanentError
from shared.jobs.outcome import Decision, Outcome, Stop, decide, storable
from shared.jobs.states import JobStatus


class Result(BaseModel):
    value: float | str


def finished(result: Any = None, exc: BaseException | None = None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
    return future


def cancelled() -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    future.cancel()
    return future


def run(
    task: asyncio.Future[Any], stop: Stop | None, attempt: int = 1, max_attempts: int = 3
) -> Decision:
    return decide(
        task,
        stop,
        result_model=Result,
        attempt=attempt,
        max_attempts=max_attempts,
        timeout=5,
        retry_delay=2.5,
    )


async def test_a_result_succeeds() -> None:
    decision = run(finished({"value": 1}), None)
    assert decision.target == JobStatus.SUCCEEDED and decision.result == {"value": 1}


async def test_a_result_after_a_late_cancel_still_succeeds() -> None:
    assert run(finished({"value": 1}), Stop.CANCEL).outcome == Outcome.SUCCEEDED


async def test_a_result_after_the_deadline_is_a_timeout() -> None:
    decision = run(finished({"value": 1}), Stop.TIMEOUT)
    assert decision.outcome == Outcome.TIMED_OUT and decision.error
    assert decision.error["type"] == "timeout"


@pytest.mark.parametrize("exc", [RuntimeError("late"), JobCancelled(), PermanentError("x")])
async def test_a_cancel_wins_over_whatever_the_handler_raised(exc: BaseException) -> None:
    decision = run(finished(exc=exc), Stop.CANCEL)
    assert decision.target == JobStatus.CANCELLED and decision.error
    assert decision.error["type"] == "cancelled"


async def test_a_timeout_wins_over_whatever_the_handler_raised() -> None:
    assert run(finished(exc=RuntimeError("x")), Stop.TIMEOUT).outcome == Outcome.TIMED_OUT
    assert run(cancelled(), Stop.TIMEOUT).outcome == Outcome.TIMED_OUT


async def test_a_handler_that_cancels_itself_is_cancelled() -> None:
    assert run(finished(exc=JobCancelled()), None).target == JobStatus.CANCELLED


async def test_an_error_is_retried_after_the_policy_delay() -> None:
    decision = run(finished(exc=RuntimeError("boom")), None, attempt=2)
    assert decision.target == JobStatus.QUEUED and decision.retry_in == 2.5
    assert decision.error == {"type": "error", "message": "RuntimeError: boom"}


async def test_an_error_on_the_last_attempt_fails() -> None:
    assert run(finished(exc=RuntimeError("x")), None, attempt=3).target == JobStatus.FAILED


async def test_a_permanent_error_fails_at_once() -> None:
    assert run(finished(exc=PermanentError("no")), None, attempt=1).target == JobStatus.FAILED


async def test_a_handler_still_running_when_stopped_is_cancelled() -> None:
    pending: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    assert run(pending, Stop.CANCEL).target == JobStatus.CANCELLED
    pending.cancel()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nul\x00byte"])
async def test_a_result_postgres_cannot_store_fails(value: Any) -> None:
    decision = run(finished({"value": value}), None)
    assert decision.target == JobStatus.FAILED and decision.error
    assert "cannot be stored" in decision.error["message"]


async def test_an_invalid_result_fails() -> None:
    assert run(finished({"nope": 1}), None).target == JobStatus.FAILED


@pytest.mark.parametrize(
    ("value", "ok"), [({"a": [1, 2.5, "x"]}, True), ({"a": float("nan")}, False), ("\x00", False)]
)
def test_storable(value: Any, ok: bool) -> None:
    assert storable(value) is ok
