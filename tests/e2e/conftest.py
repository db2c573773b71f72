from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cli.servers import free_port
from shared.settings import Settings
from tests.conftest import Servers
from tests.e2e.processes import Managed, start_api, start_worker


@pytest.fixture(scope="session")
def api_process(settings: Settings, servers: Servers) -> Iterator[Managed]:
    api = start_api(settings, free_port(), servers.tmp / "logs")
    yield api
    api.stop()


@pytest.fixture(scope="session")
def worker_process(settings: Settings, servers: Servers) -> Iterator[Managed]:
    worker = start_worker(settings, servers.tmp / "logs")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def base_url(api_process: Managed, worker_process: Managed) -> str:
    port = api_process.command[api_process.command.index("--port") + 1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def http(base_url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client
