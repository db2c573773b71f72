"""How a job kind is declared: one small frozen dataclass per kind."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from shared.jobs.states import Lane

if TYPE_CHECKING:
    from shared.jobs.context import JobContext

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

Handler = Callable[["JobContext", P], "Awaitable[R] | R"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter: attempt n waits up to base * 2**(n-1) seconds."""

    max_attempts: int = 3
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    jitter: bool = True

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        # The exponent is capped first: 2**1024 does not fit in a float.
        exponent = min(max(attempt - 1, 0), 60)
        ceiling = float(min(self.backoff_max, self.backoff_base * 2.0**exponent))
        if not self.jitter:
            return ceiling
        # Half fixed, half random: spreads retries without ever retrying at once.
        return ceiling / 2 + float((rng or random).uniform(0, ceiling / 2))


@dataclass(frozen=True)
class JobKind(Generic[P, R]):
    name: str
    lane: Lane
    params: type[P]
    result: type[R]
    handler: Callable[..., Any]
    description: str
    default_timeout: float = 300.0
    max_timeout: float = 3600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Seconds a finished job of this kind is kept before it is pruned; None: JOBQ_RESULT_TTL.
    result_ttl: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"invalid job kind name {self.name!r}")
        if not 0 < self.default_timeout <= self.max_timeout:
            raise ValueError(f"{self.name}: need 0 < default_timeout <= max_timeout")
        if self.retry.max_attempts < 1:
            raise ValueError(f"{self.name}: max_attempts must be at least 1")
        if self.result_ttl is not None and not 0 < self.result_ttl < math.inf:
            raise ValueError(f"{self.name}: result_ttl must be a positive number of seconds")
