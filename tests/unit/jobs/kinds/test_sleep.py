from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.jobs.context import ProgressUpdate
from shared.jobs.kinds.sleep import SleepParams, SleepResult, sleep
from tests.unit.jobs.kinds.conftest import MakeContext


@pytest.mark.parametrize("seconds", [0, 0.5, 3600, 3599.999])
def test_params_accept_seconds_from_0_to_3600(seconds: float) -> None:
    assert SleepParams.model_validate({"seconds": seconds}).seconds == seconds


@pytest.mark.parametrize("seconds", [-0.001, 3600.001, float("nan"), float("inf"), "soon", None])
def test_params_refuse_seconds_out_of_range(seconds: object) -> None:
    with pytest.raises(ValidationError):
        SleepParams.model_validate({"seconds": seconds})


def test_params_steps_default_to_10() -> None:
    assert SleepParams.model_validate({"seconds": 1}).steps == 10


@pytest.mark.parametrize("steps", [1, 1000])
def test_params_accept_steps_from_1_to_1000(steps: int) -> None:
    assert SleepParams.model_validate({"seconds": 1, "steps": steps}).steps == steps


@pytest.mark.parametrize("steps", [0, 1001, -1, 2.5])
def test_params_refuse_steps_out_of_range(steps: object) -> None:
    with pytest.raises(ValidationError):
        SleepParams.model_validate({"seconds": 1, "steps": steps})


def test_params_refuse_missing_seconds() -> None:
    with pytest.raises(ValidationError):
        SleepParams.model_validate({})


@pytest.mark.parametrize("params", [{"seconds": 1, "minutes": 1}, {"seconds": 1, "step": 2}])
def test_params_refuse_unknown_fields(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        SleepParams.model_validate(params)
    assert [error["type"] for error in info.value.errors()] == ["extra_forbidden"]


async def test_handler_returns_slept(make_context: MakeContext) -> None:
    result = await sleep(make_context("sleep"), SleepParams(seconds=0.01, steps=3))
    assert result == SleepResult(slept=0.01)


async def test_handler_reports_progress_to_the_last_step(make_context: MakeContext) -> None:
    ctx = make_context("sleep")
    await sleep(ctx, SleepParams(seconds=0.01, steps=3))
    update = ctx.take_progress()
    assert update == ProgressUpdate(current=3.0, total=3.0, message="step 3/3")
    assert update is not None
    assert update.percent == 100.0
