"""Idempotency keys under load: every submission replayed concurrently, no duplicate job."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text

from shared.db.engine import SessionFactory
from shared.settings import Settings
from shared.tokens import issue_token

# 20,000 POSTs through one uvicorn process, with the client on the same two cores: a few
# minutes on a fast machine, more on a slow one. The bound only stops a hang.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SUBMISSIONS = 10_000
CONNECTIONS = 64


async def test_ten_thousand_keyed_submissions_each_replayed_make_ten_thousand_jobs(
    base_url: str, settings: Settings, sessions: SessionFactory
) -> None:
    subject = f"keys-{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {issue_token(settings, subject)}"}
    # Far in the future: the jobs wait in Postgres, so this measures submission alone.
    body = {"kind": "echo", "params": {"message": "once"}, "delay_seconds": 86_400}
    gate = asyncio.Semaphore(CONNECTIONS // 2)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=60, limits=limits
    ) as client:

        async def post(key: dict[str, str]) -> httpx.Response:
            # What a key is for: a request whose answer was lost can simply be sent again.
            for _ in range(2):
                try:
                    return await client.post("/jobs", json=body, headers=key)
                except httpx.TransportError:
                    continue
            return await client.post("/jobs", json=body, headers=key)

        async def pair(number: int) -> set[str]:
            key = {"Idempotency-Key": f"k-{number}"}
            async with gate:
                first, second = await asyncio.gather(post(key), post(key))
            codes = sorted((first.status_code, second.status_code))
            # 202 for the one that made the job, 200 (or 409) for its twin; [200, 200] only
            # when the 202 was lost with its connection and the request sent again.
            assert codes in ([200, 202], [202, 409], [200, 200]), (first.text, second.text)
            return {r.json()["id"] for r in (first, second) if r.status_code in (200, 202)}

        results = await asyncio.gather(*(pair(number) for number in range(SUBMISSIONS)))

    assert all(len(ids) == 1 for ids in results)
    assert len(set().union(*results)) == SUBMISSIONS
    async with sessions() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM jobs WHERE owner = :o"), {"o": subject}
        )
    assert count == SUBMISSIONS
