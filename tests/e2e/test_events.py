"""Live events over WebSocket and SSE, through real uvicorn, a real worker and real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.hub import HUB_CLIENT_NAME
from cli.servers import free_port
from shared.db.engine import create_engine
from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import Servers
from tests.e2e.processes import Managed, start_api, start_worker

pytestmark = pytest.mark.e2e


@dataclass
class Watch:
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    @property
    def seqs(self) -> list[int]:
        return [message["seq"] for message in self.messages]

    def assert_complete(self, status: str = "succeeded") -> None:
        assert self.messages, "no messages"
        assert self.messages[0]["type"] == "snapshot", self.messages[0]
        assert self.seqs == sorted(set(self.seqs)), self.seqs
        last = self.messages[-1]
        assert last["type"] == "status" and last["status"] == status, last
        assert self.close_code == 1000, (self.close_code, self.close_reason)


def ws_url(base_url: str, path: str) -> str:
    return base_url.replace("http://", "ws://") + path


async def watch(url: str, token: str | None, limit: float = 30) -> Watch:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    result = Watch()
    async with asyncio.timeout(limit), connect(url, additional_headers=headers) as ws:
        try:
            async for raw in ws:
                result.messages.append(json.loads(raw))
        except ConnectionClosed:
            pass
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    return result


async def submit(base_url: str, token: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "/jobs",
            json={"kind": kind, "params": params},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_hundred_watchers_each_see_the_whole_job(base_url: str, token: str) -> None:
    job = await submit(base_url, token, "sleep", {"seconds": 3, "steps": 30})
    url = ws_url(base_url, f"/ws/jobs/{job['id']}")
    watches = await asyncio.gather(*(watch(url, token) for _ in range(100)))
    terminals = set()
    for result in watches:
        result.assert_complete()
        terminals.add(json.dumps({k: v for k, v in result.messages[-1].items() if k != "ts"}))
        assert any(message["type"] == "progress" for message in result.messages)
    assert len(terminals) == 1
    assert json.loads(terminals.pop())["result"] == {"slept": 3}


async def test_watcher_after_the_end_gets_snapshot_and_terminal(base_url: str, token: str) -> None:
    job = await submit(base_url, token, "echo", {"message": "done already"})
    await watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), token)
    late = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), token)
    late.assert_complete()
    assert [message["type"] for message in late.messages] == ["snapshot", "status"]
    assert late.messages[-1]["result"] == {"message": "done already"}


async def test_resume_after_a_seq_replays_only_newer_events(base_url: str, token: str) -> None:
    job = await submit(base_url, token, "sleep", {"seconds": 0.5, "steps": 5})
    first = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), token)
    first.assert_complete()
    resumed = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}?after=2"), token)
    assert resumed.messages[0]["seq"] == 3 and resumed.messages[0]["type"] != "snapshot"
    assert resumed.seqs == list(range(3, resumed.seqs[-1] + 1))
    assert resumed.messages[-1]["status"] == "succeeded" and resumed.close_code == 1000


async def test_token_in_query_string_works_and_is_never_logged(
    base_url: str, token: str, api_process: Managed
) -> None:
    job = await submit(base_url, token, "echo", {"message": "q"})
    result = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}?token={token}"), None)
    result.assert_complete()
    api_process.wait_for_log(f"/ws/jobs/{job['id']}?token=[redacted]", timeout=5)
    assert token not in api_process.log()


@pytest.mark.parametrize("bad", [None, "not-a-token"])
async def test_bad_or_missing_token_closes_4401(base_url: str, token: str, bad: str | None) -> None:
    job = await submit(base_url, token, "echo", {"message": "x"})
    result = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), bad)
    assert result.messages == [] and result.close_code == 4401


async def test_other_tenants_job_closes_4404(base_url: str, token: str, settings: Settings) -> None:
    job = await submit(base_url, token, "echo", {"message": "mine"})
    other = issue_token(settings, "eve")
    result = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), other)
    assert result.messages == [] and result.close_code == 4404


async def test_firehose_never_shows_another_tenants_job(base_url: str, settings: Settings) -> None:
    alice, bob = issue_token(settings, "fh-alice"), issue_token(settings, "fh-bob")
    seen: list[dict[str, Any]] = []

    async def listen() -> None:
        async with connect(
            ws_url(base_url, "/ws/jobs"), additional_headers={"Authorization": f"Bearer {alice}"}
        ) as ws:
            async for raw in ws:
                seen.append(json.loads(raw))

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    mine = {(await submit(base_url, alice, "echo", {"message": "a"}))["id"] for _ in range(3)}
    for _ in range(3):
        await submit(base_url, bob, "echo", {"message": "b"})
    for _ in range(50):
        if {event["job_id"] for event in seen if event["status"] == "succeeded"} >= mine:
            break
        await asyncio.sleep(0.1)
    listener.cancel()
    assert {event["job_id"] for event in seen} == mine


async def test_sse_stream_resumes_with_last_event_id(base_url: str, token: str) -> None:
    job = await submit(base_url, token, "sleep", {"seconds": 0.5, "steps": 5})

    async def read(headers: dict[str, str]) -> list[tuple[int, str, dict[str, Any]]]:
        events = []
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
            client.stream("GET", f"/jobs/{job['id']}/events", headers=headers) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            block: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line.startswith(("id:", "event:", "data:")):
                    key, _, value = line.partition(":")
                    block[key] = value.strip()
                elif not line and block:
                    events.append((int(block["id"]), block["event"], json.loads(block["data"])))
                    block = {}
        return events

    auth = {"Authorization": f"Bearer {token}"}
    whole = await read(auth)
    assert whole[0][1] == "snapshot" and whole[-1][2]["status"] == "succeeded"
    resumed = await read({**auth, "Last-Event-ID": "3"})
    assert [seq for seq, _, _ in resumed] == [seq for seq, _, _ in whole if seq > 3]


def open_unread_socket(base_url: str, path: str, token: str) -> socket.socket:
    """A WebSocket, handshake done by hand, that this test then never reads: a client library
    would keep reading into its own memory, and the server would never see a slow client."""
    port = int(base_url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


ROUND = 50


def rounds_to_outgrow_the_kernel_buffers() -> int:
    """Rounds of ROUND padded echo jobs (about 1.5 KB of events each on the firehose) that
    carry more than the kernel holds for a socket that is not read (the largest send buffer,
    tcp_wmem, plus a margin): only then does a send block, and the server give up."""
    try:
        largest = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        largest = 4 * 1024 * 1024
    return min(200, math.ceil((largest + 2 * 1024 * 1024) / (ROUND * 1500)))


def read_to_the_end(sock: socket.socket, limit: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection; and whether it did."""
    received = bytearray()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(received), True
        received += chunk
    return bytes(received), False


async def test_event_streams_decline_permessage_deflate(base_url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url(base_url, "/ws/jobs"), additional_headers=headers) as ws:
        assert ws.request is not None and ws.response is not None
        # The client offers it (websockets does by default); the server takes no extension.
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_an_end_never_published_still_reaches_the_watcher(
    base_url: str, token: str, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as client:
        body = {"kind": "echo", "params": {"message": "later"}, "delay_seconds": 3600}
        job = (await client.post("/jobs", json=body)).json()
    watching = asyncio.create_task(watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), token))
    await asyncio.sleep(1)  # the watcher has its snapshot, and then hears nothing
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            # Ended behind the API's back: written, but no event ever published.
            await connection.execute(
                text(
                    "UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),"
                    ' error = \'{"type": "cancelled", "message": "by hand"}\''
                    " WHERE id = :id"
                ),
                {"id": job["id"]},
            )
    finally:
        await engine.dispose()
    # The quiet spell is noticed within two JOBQ_WS_IDLE_CHECK periods (2 s in the suite).
    result = await asyncio.wait_for(watching, 4 * settings.ws_idle_check + 5)
    result.assert_complete("cancelled")
    assert result.messages[0]["status"] == "queued", "the watcher came after the end"


async def test_slow_watcher_is_dropped_and_delays_no_one(base_url: str, settings: Settings) -> None:
    admin = issue_token(settings, "slow-admin", admin=True)
    # A firehose client that never reads, with a tiny receive buffer: the server must give up on it.
    slow = open_unread_socket(base_url, "/ws/jobs", admin)
    try:
        token = issue_token(settings, "busy")
        job = await submit(base_url, token, "sleep", {"seconds": 2, "steps": 20})
        watching = asyncio.create_task(watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), token))
        padding = "p" * 1000
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for _ in range(rounds_to_outgrow_the_kernel_buffers()):
                await asyncio.gather(
                    *(
                        client.post(
                            "/jobs",
                            json={"kind": "echo", "params": {"message": padding}},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                        for _ in range(ROUND)
                    )
                )
        result = await asyncio.wait_for(watching, 20)
        result.assert_complete()
        slow.settimeout(1)
        received, closed = await asyncio.to_thread(read_to_the_end, slow, 30)
    finally:
        slow.close()
    assert closed, f"the server kept a client that read nothing ({len(received)} bytes sent)"
    # Its close frame, when there was room left to send it: 1013 "try again later" once a send
    # blocked, or uvicorn's 1011 when the client stopped answering its pings first (every
    # 20 s, 20 s to answer: on a slow machine the kernel's buffers can take longer to fill).
    close = received.rfind(b"\x88")
    if close >= 0 and close + 4 <= len(received) and received[close + 1] < 126:
        code = int.from_bytes(received[close + 2 : close + 4], "big")
        reason = received[close + 4 : close + 2 + received[close + 1]].decode(errors="replace")
        assert code == 1013 or (code, reason) == (1011, "keepalive ping timeout"), (code, reason)


async def test_watchers_survive_the_hub_losing_redis(
    base_url: str, token: str, settings: Settings
) -> None:
    job = await submit(base_url, token, "sleep", {"seconds": 3, "steps": 30})
    url = ws_url(base_url, f"/ws/jobs/{job['id']}")
    watching = [asyncio.create_task(watch(url, token)) for _ in range(5)]
    await asyncio.sleep(1)
    with Redis.from_url(settings.redis_url) as redis:
        # Only the hubs' connections, not every subscriber on the server.
        hubs = [c["id"] for c in redis.client_list(_type="pubsub") if c["name"] == HUB_CLIENT_NAME]
        killed = sum(redis.client_kill_filter(_id=hub) for hub in hubs)
    assert killed >= 1
    for result in await asyncio.gather(*watching):
        result.assert_complete()


@pytest.fixture
def second_stack(settings: Settings, servers: Servers) -> Iterator[str]:
    api = start_api(settings, free_port(), servers.tmp / "logs")
    worker: Managed | None = None
    try:
        worker = start_worker(settings, servers.tmp / "logs", name="second")
        port = api.command[api.command.index("--port") + 1]
        yield f"http://127.0.0.1:{port}"
    finally:
        if worker is not None:
            worker.stop()
        api.stop()


async def test_watcher_on_one_api_follows_a_job_submitted_through_another(
    base_url: str, second_stack: str, token: str
) -> None:
    for _ in range(4):
        job = await submit(base_url, token, "sleep", {"seconds": 1, "steps": 5})
        result = await watch(ws_url(second_stack, f"/ws/jobs/{job['id']}"), token)
        result.assert_complete()


@pytest.fixture
def strict_api(settings: Settings, servers: Servers, worker_process: Managed) -> Iterator[str]:
    """An API process with a one-second connection lifetime and two connections per subject."""
    strict = settings.model_copy(update={"ws_max_lifetime": 1.0, "ws_max_per_subject": 2})
    api = start_api(strict, free_port(), servers.tmp / "logs")
    port = api.command[api.command.index("--port") + 1]
    yield f"http://127.0.0.1:{port}"
    api.stop()


async def test_connection_lifetime_ends_with_1001_and_resume_continues(
    strict_api: str, token: str
) -> None:
    job = await submit(strict_api, token, "sleep", {"seconds": 2.5, "steps": 25})
    first = await watch(ws_url(strict_api, f"/ws/jobs/{job['id']}"), token)
    assert first.close_code == 1001 and "after" in first.close_reason
    assert first.messages and first.messages[-1]["status"] in {"queued", "running"}
    rest = Watch()
    for _ in range(5):
        more = await watch(
            ws_url(strict_api, f"/ws/jobs/{job['id']}?after={first.seqs[-1]}"), token
        )
        rest.messages += more.messages
        rest.close_code = more.close_code
        first.messages += more.messages
        if more.close_code == 1000:
            break
    assert rest.messages[0]["seq"] > first.seqs[0]
    assert first.seqs == sorted(set(first.seqs))
    assert first.messages[-1]["status"] == "succeeded" and rest.close_code == 1000


async def test_connections_per_subject_are_capped(strict_api: str, token: str) -> None:
    job = await submit(strict_api, token, "sleep", {"seconds": 0.9, "steps": 3})
    url = ws_url(strict_api, f"/ws/jobs/{job['id']}")
    results = await asyncio.gather(*(watch(url, token) for _ in range(3)))
    codes = sorted(result.close_code or 0 for result in results)
    assert codes.count(4429) == 1, codes


async def test_resume_from_the_end_gets_the_terminal_event_and_close(
    base_url: str, token: str
) -> None:
    job = await submit(base_url, token, "echo", {"message": "end"})
    first = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}"), token)
    end = first.seqs[-1]
    for after in (end, end + 100):
        again = await watch(
            ws_url(base_url, f"/ws/jobs/{job['id']}?after={after}"), token, limit=10
        )
        assert [message["type"] for message in again.messages] == ["status"]
        assert again.messages[0]["status"] == "succeeded" and again.close_code == 1000
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        client.stream(
            "GET",
            f"/jobs/{job['id']}/events",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": str(end)},
        ) as response,
    ):
        body = (await response.aread()).decode()
    assert body.count("event: status") == 1 and '"succeeded"' in body


async def test_malformed_job_id_closes_4404(base_url: str, token: str) -> None:
    result = await watch(ws_url(base_url, "/ws/jobs/not-a-uuid"), token)
    assert result.messages == [] and result.close_code == 4404


@pytest.mark.parametrize("after", ["-1", "x", "%C2%B2"])  # the last: "²", a digit to isdigit()
async def test_an_after_that_is_not_a_seq_closes_1008(
    base_url: str, token: str, after: str
) -> None:
    job = await submit(base_url, token, "echo", {"message": "x"})
    result = await watch(ws_url(base_url, f"/ws/jobs/{job['id']}?after={after}"), token)
    assert result.messages == [] and result.close_code == 1008, result


@pytest.fixture
def overloaded_stack(own_broker: Settings, servers: Servers) -> Iterator[str]:
    """An API whose watchers' queues hold 4 events, fed about 100 progress events a second."""
    busy = own_broker.model_copy(
        update={"ws_queue_size": 4, "progress_interval": 0.01, "ws_max_per_subject": 1000}
    )
    worker = start_worker(busy, servers.tmp / "logs", name="overloaded")
    api = start_api(busy, free_port(), servers.tmp / "logs")
    port = api.command[api.command.index("--port") + 1]
    yield f"http://127.0.0.1:{port}"
    api.stop()
    worker.stop()
    log = api.log()
    assert "Traceback" not in log and '"exception"' not in log


async def test_watchers_that_fall_behind_still_get_the_end(
    overloaded_stack: str, token: str
) -> None:
    job = await submit(overloaded_stack, token, "sleep", {"seconds": 3, "steps": 300})
    url = ws_url(overloaded_stack, f"/ws/jobs/{job['id']}")
    watches = await asyncio.gather(*(watch(url, token, limit=60) for _ in range(200)))
    for result in watches:
        result.assert_complete()
    # Falling behind was answered with fresh snapshots, not with lost watchers.
    assert (
        sum(
            1
            for result in watches
            for message in result.messages[1:]
            if message["type"] == "snapshot"
        )
        > 0
    )
