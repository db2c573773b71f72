from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.jobs.kinds.echo import EchoParams, EchoResult, echo
from tests.unit.jobs.kinds.conftest import MakeContext


@pytest.mark.parametrize("message", ["a", "hello", "x" * 1000])
def test_params_accept_a_message_of_1_to_1000_chars(message: str) -> None:
    assert EchoParams.model_validate({"message": message}).message == message


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"message": ""},
        {"message": "x" * 1001},
        {"message": 42},
        {"message": None},
    ],
)
def test_params_refuse_a_bad_message(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EchoParams.model_validate(params)


def test_params_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError) as info:
        EchoParams.model_validate({"message": "hi", "loud": True})
    assert [error["type"] for error in info.value.errors()] == ["extra_forbidden"]


async def test_handler_returns_the_message(make_context: MakeContext) -> None:
    result = await echo(make_context("echo"), EchoParams(message="hello"))
    assert result == EchoResult(message="hello")
