from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.jobs.kinds.notify import NotifyParams, NotifyResult, notify
from tests.unit.jobs.kinds.conftest import MakeContext

VALID: dict[str, Any] = {"email": "alice@example.com", "subject": "Hi", "body": "Hello."}


def with_(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


@pytest.mark.parametrize(
    "params",
    [
        VALID,
        with_(subject="s"),
        with_(subject="s" * 200),
        with_(body=""),
        with_(body="b" * 10000),
        with_(email="bob.smith+tag@mail.example.org"),
    ],
    ids=["valid", "subject-1", "subject-200", "body-empty", "body-10000", "email-plus-tag"],
)
def test_params_accept(params: dict[str, Any]) -> None:
    NotifyParams.model_validate(params)


@pytest.mark.parametrize(
    "params",
    [
        with_(email="not-an-email"),
        with_(email="alice@"),
        with_(email="@example.com"),
        with_(email="alice example@example.com"),
        with_(subject=""),
        with_(subject="s" * 201),
        with_(body="b" * 10001),
        {"subject": "Hi"},
        {"email": "alice@example.com"},
    ],
    ids=[
        "email-no-at",
        "email-no-domain",
        "email-no-local-part",
        "email-space",
        "subject-empty",
        "subject-201",
        "body-10001",
        "email-missing",
        "subject-missing",
    ],
)
def test_params_refuse(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NotifyParams.model_validate(params)


def test_params_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError) as info:
        NotifyParams.model_validate(with_(cc="bob@example.com"))
    assert [error["type"] for error in info.value.errors()] == ["extra_forbidden"]


async def test_handler_returns_delivered_to(make_context: MakeContext) -> None:
    result = await notify(make_context("notify"), NotifyParams.model_validate(VALID))
    assert result == NotifyResult(delivered_to="alice@example.com")
