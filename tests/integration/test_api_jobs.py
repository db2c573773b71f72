"""The API through an ASGI client with its lifespan, on real Postgres and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from redis.asyncio import Redis

from api.main import create_app
from shared.settings import Settings
from tests.conftest import auth


async def wait_for_status(
    client: httpx.AsyncClient, token: str, job_id: str, *statuses: str
) -> dict[str, Any]:
    for _ in range(100):
        response = await client.get(f"/jobs/{job_id}", headers=auth(token))
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {body['status']}")


async def test_echo_runs_in_process_and_succeeds(
    client: httpx.AsyncClient, token: str, subject: str
) -> None:
    response = await client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "hi"}}, headers=auth(token)
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["lane"] == "quick" and job["owner"] == subject
    done = await wait_for_status(client, token, job["id"], "succeeded")
    assert done["result"] == {"message": "hi"}
    assert done["attempts"] == 1
    assert done["progress"]["percent"] == 100.0
    assert done["started_at"] and done["finished_at"]


async def test_heavy_job_is_published_to_its_priority_queue(
    token: str, own_broker: Settings
) -> None:
    app = create_app(own_broker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobq.test") as client:
            response = await client.post(
                "/jobs",
                json={"kind": "sleep", "params": {"seconds": 1}, "priority": "high"},
                headers=auth(token),
            )
    assert response.status_code == 202
    job_id = response.json()["id"]
    redis = Redis.from_url(own_broker.redis_url)
    try:
        messages = await redis.lrange("jobq.high", 0, -1)
    finally:
        await redis.aclose()
    assert any(job_id.encode() in message for message in messages)


async def test_unknown_kind_is_422_and_stores_nothing(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post("/jobs", json={"kind": "nope", "params": {}}, headers=auth(token))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "kind"]
    listed = await client.get("/jobs", headers=auth(token))
    assert listed.json()["items"] == []


async def test_bad_params_are_422_with_pydantic_detail(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post(
        "/jobs",
        json={"kind": "notify", "params": {"email": "not-an-email", "subject": ""}},
        headers=auth(token),
    )
    assert response.status_code == 422
    locs = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert ("body", "params", "email") in locs
    assert ("body", "params", "subject") in locs
    assert all({"loc", "msg", "type"} <= error.keys() for error in response.json()["detail"])


async def test_unknown_fields_are_refused_everywhere(client: httpx.AsyncClient, token: str) -> None:
    top = await client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "x"}, "colour": 1}, headers=auth(token)
    )
    nested = await client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "x", "extra": 1}}, headers=auth(token)
    )
    assert top.status_code == 422 and top.json()["detail"][0]["loc"] == ["body", "colour"]
    assert nested.status_code == 422 and nested.json()["detail"][0]["loc"] == [
        "body",
        "params",
        "extra",
    ]
    assert (await client.get("/jobs", headers=auth(token))).json()["items"] == []


async def test_missing_or_forged_token_is_401(client: httpx.AsyncClient) -> None:
    missing = await client.get("/jobs")
    forged = await client.get("/jobs", headers=auth("a.b.c"))
    for response in (missing, forged):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_another_subject_gets_404(
    client: httpx.AsyncClient, token: str, settings: Settings
) -> None:
    from shared.tokens import issue_token

    created = await client.post(
        "/jobs", json={"kind": "echo", "params": {"message": "mine"}}, headers=auth(token)
    )
    job_id = created.json()["id"]
    other = issue_token(settings, f"other-{uuid.uuid4().hex[:6]}")
    assert (await client.get(f"/jobs/{job_id}", headers=auth(other))).status_code == 404
    assert (await client.post(f"/jobs/{job_id}/cancel", headers=auth(other))).status_code == 404
    assert (await client.post(f"/jobs/{job_id}/retry", headers=auth(other))).status_code == 404
    assert (await client.get("/jobs", headers=auth(other))).json()["items"] == []
    admin = issue_token(settings, "root", admin=True)
    assert (await client.get(f"/jobs/{job_id}", headers=auth(admin))).status_code == 200


async def test_every_response_has_request_id_and_timing(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.json() == {"status": "ok"}
    assert response.headers["X-Request-ID"] == "abc-123"
    assert float(response.headers["X-Process-Time"]) >= 0


async def test_ready_checks_database_and_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert isinstance(body["workers_alive"], int)  # counted in test_operations


async def test_kinds_lists_builtins_with_schemas(client: httpx.AsyncClient, token: str) -> None:
    kinds = {
        kind["kind"]: kind for kind in (await client.get("/kinds", headers=auth(token))).json()
    }
    assert set(kinds) >= {"echo", "notify", "sleep", "primes", "fail"}
    assert kinds["sleep"]["lane"] == "heavy" and kinds["echo"]["lane"] == "quick"
    assert kinds["primes"]["params_schema"]["properties"]["limit"]["maximum"] == 100_000_000
    assert "count" in kinds["primes"]["result_schema"]["properties"]


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.1")
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/retry"} <= set(
        schema["paths"]
    )
    assert {"/jobs/{job_id}/events", "/kinds", "/health", "/ready"} <= set(schema["paths"])
    submission = schema["components"]["schemas"]["JobSubmission"]
    assert submission["examples"] and submission["additionalProperties"] is False
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_etag_gives_304_until_the_job_changes(client: httpx.AsyncClient, token: str) -> None:
    created = await client.post(
        "/jobs",
        json={"kind": "echo", "params": {"message": "etag"}, "delay_seconds": 3600},
        headers=auth(token),
    )
    job_id = created.json()["id"]
    first = await client.get(f"/jobs/{job_id}", headers=auth(token))
    etag = first.headers["ETag"]
    same = await client.get(f"/jobs/{job_id}", headers={**auth(token), "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["ETag"] == etag
    weak = await client.get(
        f"/jobs/{job_id}", headers={**auth(token), "If-None-Match": f'"x", W/{etag}'}
    )
    assert weak.status_code == 304
    await client.post(f"/jobs/{job_id}/cancel", headers=auth(token))
    changed = await client.get(f"/jobs/{job_id}", headers={**auth(token), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.json()["status"] == "cancelled"
