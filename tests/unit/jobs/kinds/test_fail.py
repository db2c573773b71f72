from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.errors import PermanentError
from shared.jobs.kinds.fail import FailParams, FailResult, fail
from tests.unit.jobs.kinds.conftest import MakeContext


def test_params_defaults() -> None:
    params = FailParams.model_validate({})
    assert params.fail_times is None
    assert params.retryable is True


@pytest.mark.parametrize("fail_times", [0, 1, 20, None])
def test_params_accept_fail_times_zero_or_more_or_null(fail_times: int | None) -> None:
    assert FailParams.model_validate({"fail_times": fail_times}).fail_times == fail_times


@pytest.mark.parametrize("fail_times", [-1, 1.5, "twice"])
def test_params_refuse_bad_fail_times(fail_times: object) -> None:
    with pytest.raises(ValidationError):
        FailParams.model_validate({"fail_times": fail_times})


def test_params_accept_retryable_false() -> None:
    assert FailParams.model_validate({"retryable": False}).retryable is False


def test_params_accept_a_message() -> None:
    assert FailParams.model_validate({"message": "boom"}).message == "boom"


@pytest.mark.parametrize("params", [{"fail_times": 1, "times": 1}, {"retry": False}])
def test_params_refuse_unknown_fields(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        FailParams.model_validate(params)
    assert [error["type"] for error in info.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize("attempt", [1, 2])
async def test_handler_raises_on_the_first_fail_times_attempts(
    make_context: MakeContext, attempt: int
) -> None:
    params = FailParams(message="boom", fail_times=2)
    with pytest.raises(RuntimeError, match="boom"):
        await fail(make_context("fail", attempt), params)


@pytest.mark.parametrize("attempt", [3, 4])
async def test_handler_returns_attempts_after_fail_times(
    make_context: MakeContext, attempt: int
) -> None:
    result = await fail(make_context("fail", attempt), FailParams(fail_times=2))
    assert result == FailResult(attempts=attempt)


async def test_handler_with_zero_fail_times_succeeds_at_once(make_context: MakeContext) -> None:
    result = await fail(make_context("fail", 1), FailParams(fail_times=0))
    assert result == FailResult(attempts=1)


@pytest.mark.parametrize("attempt", [1, 5, 100])
async def test_handler_without_fail_times_always_raises(
    make_context: MakeContext, attempt: int
) -> None:
    with pytest.raises(RuntimeError):
        await fail(make_context("fail", attempt), FailParams())


async def test_handler_raises_permanent_error_when_not_retryable(make_context: MakeContext) -> None:
    params = FailParams(message="boom", fail_times=2, retryable=False)
    with pytest.raises(PermanentError, match="boom"):
        await fail(make_context("fail", 1), params)


async def test_handler_not_retryable_still_succeeds_after_fail_times(
    make_context: MakeContext,
) -> None:
    params = FailParams(fail_times=2, retryable=False)
    assert await fail(make_context("fail", 3), params) == FailResult(attempts=3)
