"""Idempotency-Key on POST /jobs, through the API on real Postgres."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import auth

ECHO = {"kind": "echo", "params": {"message": "once"}, "delay_seconds": 3600}


def keyed(token: str, key: str) -> dict[str, str]:
    return {**auth(token), "Idempotency-Key": key}


async def test_same_key_same_body_gives_the_original_job(
    client: httpx.AsyncClient, token: str
) -> None:
    key = uuid.uuid4().hex
    first = await client.post("/jobs", json=ECHO, headers=keyed(token, key))
    again = await client.post("/jobs", json=ECHO, headers=keyed(token, key))
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    listed = (await client.get("/jobs", headers=auth(token))).json()["items"]
    assert [item["id"] for item in listed] == [first.json()["id"]]


async def test_same_key_other_body_is_422(client: httpx.AsyncClient, token: str) -> None:
    key = uuid.uuid4().hex
    assert (await client.post("/jobs", json=ECHO, headers=keyed(token, key))).status_code == 202
    other = {**ECHO, "params": {"message": "twice"}}
    response = await client.post("/jobs", json=other, headers=keyed(token, key))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert len((await client.get("/jobs", headers=auth(token))).json()["items"]) == 1


async def test_keys_belong_to_their_subject(
    client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    key = uuid.uuid4().hex
    mine = await client.post("/jobs", json=ECHO, headers=keyed(token, key))
    theirs = await client.post(
        "/jobs", json=ECHO, headers=keyed(issue_token(settings, f"o-{key[:6]}"), key)
    )
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]


async def test_concurrent_duplicates_make_one_job(client: httpx.AsyncClient, token: str) -> None:
    key = uuid.uuid4().hex
    responses = await asyncio.gather(
        *(client.post("/jobs", json=ECHO, headers=keyed(token, key)) for _ in range(8))
    )
    assert {response.status_code for response in responses} <= {200, 202, 409}
    ids = {response.json()["id"] for response in responses if response.status_code in (200, 202)}
    assert len(ids) == 1
    assert sum(response.status_code == 202 for response in responses) == 1
    assert len((await client.get("/jobs", headers=auth(token))).json()["items"]) == 1


async def test_malformed_key_is_422(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post("/jobs", json=ECHO, headers=keyed(token, "x" * 300))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
