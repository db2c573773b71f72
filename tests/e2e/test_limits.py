"""Rate limits hold across API processes: they are counted in Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cli.servers import free_port
from shared.settings import Settings
from tests.conftest import Servers
from tests.e2e.processes import Managed, start_api

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_apis(settings: Settings, servers: Servers) -> Iterator[list[str]]:
    limited = settings.model_copy(update={"rate_limit": "10/minute"})
    apis = [start_api(limited, free_port(), servers.tmp / "logs") for _ in range(2)]
    yield [f"http://127.0.0.1:{api.command[api.command.index('--port') + 1]}" for api in apis]
    for api in apis:
        api.stop()


def test_a_subject_gets_one_limit_across_two_api_processes(two_apis: list[str], token: str) -> None:
    codes = []
    for number in range(12):
        with httpx.Client(base_url=two_apis[number % 2], timeout=10) as client:
            codes.append(
                client.get("/jobs", headers={"Authorization": f"Bearer {token}"}).status_code
            )
    assert codes == [200] * 10 + [429] * 2


@pytest.fixture
def two_capped_apis(
    settings: Settings, servers: Servers, worker_process: Managed
) -> Iterator[list[str]]:
    capped = settings.model_copy(update={"ws_max_per_subject": 2})
    apis = [start_api(capped, free_port(), servers.tmp / "logs") for _ in range(2)]
    yield [f"http://127.0.0.1:{api.command[api.command.index('--port') + 1]}" for api in apis]
    for api in apis:
        api.stop()


async def test_the_stream_cap_holds_across_api_processes(
    two_capped_apis: list[str], token: str
) -> None:
    first, second = two_capped_apis
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=first, headers=headers) as client:
        job = (await client.post("/jobs", json={"kind": "sleep", "params": {"seconds": 3}})).json()
    url = f"/ws/jobs/{job['id']}"
    async with (
        connect(first.replace("http", "ws") + url, additional_headers=headers) as one,
        connect(first.replace("http", "ws") + url, additional_headers=headers) as two,
    ):
        await one.recv()
        await two.recv()
        async with connect(second.replace("http", "ws") + url, additional_headers=headers) as three:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(three.recv(), 5)
            assert three.close_code == 4429
    # Closed streams stop counting: the other process takes a new one. The server gives a
    # stream's place back when its handler sees the close, just after the client's close
    # returns, so a try in that instant may still be refused (4429); the place comes back.
    deadline = asyncio.get_running_loop().time() + 3
    while True:
        try:
            async with connect(
                second.replace("http", "ws") + url, additional_headers=headers
            ) as again:
                assert json.loads(await asyncio.wait_for(again.recv(), 5))["type"] == "snapshot"
            break
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4429
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
