from __future__ import annotations

from typing import Any

import pytest

from cli.params import parse_params


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["seconds=5"], {"seconds": 5}),
        (["seconds=0.5", "steps=2"], {"seconds": 0.5, "steps": 2}),
        (["message=hello world"], {"message": "hello world"}),
        (["retryable=false"], {"retryable": False}),
        (["fail_times=null"], {"fail_times": None}),
        (['tags=["a", "b"]'], {"tags": ["a", "b"]}),
        (["equation=a=b"], {"equation": "a=b"}),
        (["empty="], {"empty": ""}),
    ],
)
def test_values_parse_as_json_when_they_can(pairs: list[str], expected: dict[str, Any]) -> None:
    assert parse_params(pairs) == expected


@pytest.mark.parametrize("pair", ["noequals", "=value", " =x"])
def test_malformed_pairs_are_refused(pair: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_params([pair])
