"""Job params from the command line: `key=value`, the value as JSON when it parses."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """`seconds=5` gives 5, `message=hi` gives "hi", `tags=["a"]` gives a list.

    Raises ValueError for an item without `=` or with an empty key.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params
