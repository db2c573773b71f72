from __future__ import annotations

import uuid
from typing import Protocol

import pytest

from shared.jobs.context import JobContext


class MakeContext(Protocol):
    def __call__(self, kind: str, attempt: int = 1) -> JobContext: ...


@pytest.fixture
def make_context() -> MakeContext:
    def make(kind: str, attempt: int = 1) -> JobContext:
        return JobContext(job_id=uuid.uuid4(), kind=kind, attempt=attempt, max_attempts=3)

    return make
