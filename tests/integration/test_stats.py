"""GET /stats: the dashboard's summary, counted for what the caller may see."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.routes.stats import flower_url
from shared.jobs.states import JobStatus
from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import auth
from tests.integration.conftest import own_client

LATER = {"kind": "echo", "params": {"message": "later"}, "delay_seconds": 3600}


async def submit(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post("/jobs", json=LATER, headers=auth(token))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.fixture
async def private_client(settings: Settings, own_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API on a database of its own: an admin's counts cover every job in the database,
    and the suite's shared one has other tests' workers moving jobs meanwhile."""
    async with own_client(settings.model_copy(update={"database_url": own_database})) as client:
        yield client


async def test_a_subject_sees_its_own_counts_and_an_admin_sees_all(
    private_client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    client = private_client
    other = issue_token(settings, f"user-{uuid.uuid4().hex[:8]}")
    admin = issue_token(settings, "ops", admin=True)
    before = (await client.get("/stats", headers=auth(admin))).json()["jobs"]
    await submit(client, token)
    cancelled = await submit(client, token)
    await client.post(f"/jobs/{cancelled}/cancel", headers=auth(token))
    await submit(client, other)

    mine = await client.get("/stats", headers=auth(token))
    theirs = await client.get("/stats", headers=auth(other))
    everyone = await client.get("/stats", headers=auth(admin))

    assert mine.status_code == 200, mine.text
    assert mine.json()["jobs"] == {
        **{status.value: 0 for status in JobStatus},
        "queued": 1,
        "cancelled": 1,
    }
    assert theirs.json()["jobs"] == {**{status.value: 0 for status in JobStatus}, "queued": 1}
    after = everyone.json()["jobs"]
    assert after["queued"] == before["queued"] + 2
    assert after["cancelled"] == before["cancelled"] + 1


async def test_the_shared_figures_and_flower_come_along(
    client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    body = (await client.get("/stats", headers=auth(token))).json()

    assert body["flower_url"] == f"http://{settings.flower_host}:{settings.flower_port}"
    assert isinstance(body["workers_alive"], int)
    depth = body["queue_depth"]
    assert depth is None or depth == sum(body["queues"].values())


async def test_stats_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/stats")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_flower_bound_to_every_interface_is_linked_on_the_host_the_browser_used(
    settings: Settings,
) -> None:
    everywhere = settings.model_copy(update={"flower_host": "0.0.0.0", "flower_port": 5555})

    assert flower_url(everywhere, "jobs.example.com") == "http://jobs.example.com:5555"
    assert flower_url(everywhere, "bad host\r\n") == "http://127.0.0.1:5555"
    assert flower_url(settings.model_copy(update={"flower_host": "::1"}), None).startswith(
        "http://[::1]:"
    )
