from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind, RetryPolicy
from shared.jobs.states import Lane


class Params(BaseModel):
    value: int


class Result(BaseModel):
    value: int


def handler(ctx: JobContext, params: Params) -> Result:
    return Result(value=params.value)


def make_kind(
    name: str = "sample",
    *,
    default_timeout: float = 10.0,
    max_timeout: float = 60.0,
    retry: RetryPolicy | None = None,
) -> JobKind[Params, Result]:
    return JobKind(
        name=name,
        lane=Lane.QUICK,
        params=Params,
        result=Result,
        handler=handler,
        description="A kind for tests.",
        default_timeout=default_timeout,
        max_timeout=max_timeout,
        retry=retry or RetryPolicy(),
    )


@pytest.mark.parametrize("name", ["echo", "my_kind", "team.kind", "Kind2"])
def test_kind_accepts_a_valid_name(name: str) -> None:
    assert make_kind(name).name == name


@pytest.mark.parametrize(
    "name", ["", " ", "_", ".", "has space", "a-b", "a/b", "echo!", "tab\tkind"]
)
def test_kind_refuses_a_bad_name(name: str) -> None:
    with pytest.raises(ValueError, match="invalid job kind name"):
        make_kind(name)


def test_kind_refuses_default_timeout_above_max_timeout() -> None:
    with pytest.raises(ValueError, match="default_timeout <= max_timeout"):
        make_kind(default_timeout=61.0, max_timeout=60.0)


def test_kind_accepts_default_timeout_equal_to_max_timeout() -> None:
    assert make_kind(default_timeout=60.0, max_timeout=60.0).default_timeout == 60.0


@pytest.mark.parametrize("default_timeout", [0.0, -1.0])
def test_kind_refuses_a_non_positive_default_timeout(default_timeout: float) -> None:
    with pytest.raises(ValueError, match="0 < default_timeout"):
        make_kind(default_timeout=default_timeout)


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_kind_refuses_max_attempts_below_one(max_attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        make_kind(retry=RetryPolicy(max_attempts=max_attempts))


def test_kind_accepts_a_single_attempt() -> None:
    assert make_kind(retry=RetryPolicy(max_attempts=1)).retry.max_attempts == 1


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0)],
)
def test_delay_grows_exponentially(attempt: int, expected: float) -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=1000.0, jitter=False)
    assert policy.delay(attempt) == expected


@pytest.mark.parametrize("attempt", [0, -3])
def test_delay_before_the_first_attempt_is_the_base(attempt: int) -> None:
    policy = RetryPolicy(backoff_base=2.0, jitter=False)
    assert policy.delay(attempt) == 2.0


@pytest.mark.parametrize("attempt", [5, 6, 20, 100])
def test_delay_is_capped_at_backoff_max(attempt: int) -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=30.0, jitter=False)
    assert policy.delay(attempt) == 30.0


def test_delay_stays_capped_for_a_huge_attempt_number() -> None:
    # 2 ** 2000 does not fit a float: the cap must apply before the multiplication.
    policy = RetryPolicy(backoff_base=2.0, backoff_max=30.0, jitter=False)
    assert policy.delay(2000) == 30.0


@pytest.mark.parametrize("attempt", range(1, 13))
def test_jittered_delay_stays_between_half_the_ceiling_and_the_ceiling(attempt: int) -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=600.0, jitter=True)
    ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [policy.delay(attempt, rng) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


def test_jittered_delay_varies() -> None:
    policy = RetryPolicy(backoff_base=2.0, jitter=True)
    rng = random.Random(7)
    assert len({policy.delay(4, rng) for _ in range(20)}) > 1


def test_jittered_delay_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy(backoff_base=2.0, jitter=True)
    first = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    second = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    assert first == second
