"""Rate limits hold across API processes: they are counted in Redis."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cli.servers import free_port
from shared.settings import Settings
from tests.conftest import Servers
from tests.e2e.processes import start_api

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
