"""Submit N jobs to a jobq API as fast as it takes them, from a process of its own.

    python -m bench.submit BASE_URL TOKEN COUNT CONCURRENCY BODY_JSON

Prints one JSON line: accepted, errors, seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import httpx


async def submit(base: str, token: str, count: int, concurrency: int, body: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    left = count
    accepted = errors = 0
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as http:

        async def one_by_one() -> None:
            nonlocal left, accepted, errors
            while left > 0:
                left -= 1
                response = await http.post(
                    "/jobs", content=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
                if response.status_code == 202:
                    accepted += 1
                else:
                    errors += 1

        await asyncio.gather(*(one_by_one() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    print(json.dumps({"accepted": accepted, "errors": errors, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    base, token, count, concurrency, body = sys.argv[1:6]
    asyncio.run(submit(base, token, int(count), int(concurrency), body))
