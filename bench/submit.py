"""Submit N jobs to a jobq API as fast as it takes them, from a process of its own.

    python -m bench.submit BASE_URL TOKEN COUNT CONCURRENCY BODY_JSON

Prints one JSON line: accepted, errors, seconds, cpu_seconds.

A load generator, so it must cost the machine little: each of CONCURRENCY keep-alive
connections writes a prepared request (only its Idempotency-Key changes) and reads the answer
with httptools' C parser, on uvloop. About a tenth of the CPU per request of an httpx client,
which on a 2-core machine would otherwise take a core from the API and the worker it measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from urllib.parse import urlsplit

import httptools
import uvloop

READ_TIMEOUT = 30.0


class Answers:
    """One connection's reading side: the status of each complete response, in order."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Queue[int] = asyncio.Queue()

    def on_message_complete(self) -> None:
        self.done.put_nowait(self.parser.get_status_code())


def prepare(host: str, token: str, body: bytes) -> tuple[bytes, bytes]:
    """The request before and after its Idempotency-Key."""
    head = (
        f"POST /jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nIdempotency-Key: "
    ).encode()
    return head, b"\r\n\r\n" + body


async def submit(base: str, token: str, count: int, concurrency: int, body: str) -> None:
    url = urlsplit(base)
    if url.scheme != "http" or url.path not in ("", "/"):
        raise SystemExit(f"BASE_URL must be http://host:port, not {base!r}")
    host, port = url.hostname or "127.0.0.1", url.port or 80
    head, tail = prepare(f"{host}:{port}", token, body.encode())
    left = count
    accepted = errors = 0
    started = time.monotonic()
    cpu_started = time.process_time()

    async def one_by_one() -> None:
        """One connection's share; a request that fails (a closed connection, no answer
        within READ_TIMEOUT) counts as an error and the connection is made again."""
        nonlocal left, accepted, errors
        while left > 0:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                left -= 1
                errors += 1
                continue
            answers = Answers()
            try:
                while left > 0:
                    left -= 1
                    writer.write(head + uuid.uuid4().hex.encode() + tail)
                    while answers.done.empty():
                        data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                        if not data:
                            raise ConnectionError("the API closed the connection")
                        answers.parser.feed_data(data)
                    if answers.done.get_nowait() == 202:
                        accepted += 1
                    else:
                        errors += 1
            except (OSError, TimeoutError, httptools.HttpParserError):
                errors += 1
            finally:
                writer.close()

    await asyncio.gather(*(one_by_one() for _ in range(concurrency)))
    report = {
        "accepted": accepted,
        "errors": errors,
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    base, token, count, concurrency, body = sys.argv[1:6]
    uvloop.run(submit(base, token, int(count), int(concurrency), body))
