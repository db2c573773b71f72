"""primes: counts the primes up to a limit with a segmented sieve. CPU-bound, so synchronous."""

import math

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs.context import JobContext
from shared.jobs.spec import JobKind
from shared.jobs.states import Lane

SEGMENT = 1 << 18


class PrimesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(ge=2, le=100_000_000, examples=[1_000_000])


class PrimesResult(BaseModel):
    count: int
    largest: int


def _base_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(range(n * n, limit + 1, n)))
    return [n for n in range(2, limit + 1) if sieve[n]]


def primes(ctx: JobContext, params: PrimesParams) -> PrimesResult:
    limit = params.limit
    base = _base_primes(math.isqrt(limit))
    count, largest = 0, 2
    for low in range(2, limit + 1, SEGMENT):
        high = min(low + SEGMENT - 1, limit)
        segment = bytearray([1]) * (high - low + 1)
        for p in base:
            if p * p > high:
                break
            start = max(p * p, (low + p - 1) // p * p)
            segment[start - low :: p] = bytearray(len(range(start, high + 1, p)))
        found = segment.count(1)
        if found:
            count += found
            largest = low + segment.rindex(1)
        ctx.progress(high - 1, limit - 1, f"sieved up to {high}")
    return PrimesResult(count=count, largest=largest)


kind = JobKind(
    name="primes",
    lane=Lane.HEAVY,
    params=PrimesParams,
    result=PrimesResult,
    handler=primes,
    description="Count the primes up to `limit` and report the largest.",
    default_timeout=600,
    max_timeout=3600,
)
