from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.jobs.kinds.primes import SEGMENT, PrimesParams, PrimesResult, primes
from tests.unit.jobs.kinds.conftest import MakeContext


def naive_primes(limit: int) -> list[int]:
    """A plain sieve of Eratosthenes, to check the segmented one against."""
    is_prime = [True] * (limit + 1)
    is_prime[0] = is_prime[1] = False
    for n in range(2, int(limit**0.5) + 1):
        if is_prime[n]:
            for multiple in range(n * n, limit + 1, n):
                is_prime[multiple] = False
    return [n for n, prime in enumerate(is_prime) if prime]


@pytest.mark.parametrize("limit", [2, 3, 1_000_000, 100_000_000])
def test_params_accept_limit_from_2_to_100_million(limit: int) -> None:
    assert PrimesParams.model_validate({"limit": limit}).limit == limit


@pytest.mark.parametrize("limit", [1, 0, -7, 100_000_001, 2.5, "many", None])
def test_params_refuse_limit_out_of_range(limit: object) -> None:
    with pytest.raises(ValidationError):
        PrimesParams.model_validate({"limit": limit})


@pytest.mark.parametrize("params", [{"limit": 10, "start": 2}, {"limit": 10, "Limit": 10}])
def test_params_refuse_unknown_fields(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        PrimesParams.model_validate(params)
    assert [error["type"] for error in info.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize(
    ("limit", "count", "largest"),
    [
        (2, 1, 2),
        (3, 2, 3),
        (10, 4, 7),
        (100, 25, 97),
        (1_000_000, 78498, 999983),
    ],
)
def test_handler_counts_primes(
    make_context: MakeContext, limit: int, count: int, largest: int
) -> None:
    result = primes(make_context("primes"), PrimesParams(limit=limit))
    assert result == PrimesResult(count=count, largest=largest)


# Segments start at 2, so the first holds 2 .. SEGMENT + 1 and the second starts at SEGMENT + 2.
@pytest.mark.parametrize(
    "limit",
    [SEGMENT, SEGMENT + 1, SEGMENT + 2, SEGMENT + 3, 2 * SEGMENT + 2, 2 * SEGMENT + 3],
)
def test_handler_matches_a_naive_sieve_around_segment_boundaries(
    make_context: MakeContext, limit: int
) -> None:
    expected = naive_primes(limit)
    result = primes(make_context("primes"), PrimesParams(limit=limit))
    assert result == PrimesResult(count=len(expected), largest=expected[-1])


def test_handler_reports_progress_up_to_the_limit(make_context: MakeContext) -> None:
    ctx = make_context("primes")
    primes(ctx, PrimesParams(limit=2 * SEGMENT + 3))
    update = ctx.take_progress()
    assert update is not None
    assert update.percent == 100.0
