from __future__ import annotations

import pytest

from api.limits import MAX_DEPTH, too_deep


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b'{"a": [1, 2, {"b": 3}]}', False),
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, False),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True),
        (b'{"s": "' + b"[" * 1000 + b'"}', False),  # brackets inside a string do not nest
        (b'{"s": "\\\\\\"' + b"[" * 1000 + b'"}', False),  # nor after escaped quotes
        (b"[{}]" * 1000, False),  # many, but shallow
    ],
)
def test_too_deep(body: bytes, deep: bool) -> None:
    assert too_deep(body) is deep
