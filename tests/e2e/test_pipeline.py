"""Every built-in kind from submit to result, through real uvicorn and a real Celery worker,
on each broker (Redis, and RabbitMQ when JOBQ_TEST_BROKER_URL is set)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import on_each_broker
from tests.e2e.conftest import Running

pytestmark = [pytest.mark.e2e, on_each_broker]


@pytest.fixture
def base_url(running: Running) -> str:
    return running.base_url


def submit(http: httpx.Client, kind: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = http.post("/jobs", json={"kind": kind, "params": params, **extra})
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/jobs/{response.json()['id']}"
    body: dict[str, Any] = response.json()
    return body


def wait_for(
    http: httpx.Client, job_id: str, *statuses: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job stayed {job['status']}: {job}")
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("kind", "params", "result"),
    [
        ("echo", {"message": "hello"}, {"message": "hello"}),
        ("notify", {"email": "a@example.com", "subject": "hi"}, {"delivered_to": "a@example.com"}),
        ("sleep", {"seconds": 0.5, "steps": 5}, {"slept": 0.5}),
        ("primes", {"limit": 1_000_000}, {"count": 78498, "largest": 999983}),
        ("fail", {"message": "x", "fail_times": 0}, {"attempts": 1}),
    ],
)
def test_builtin_kind_runs_to_its_result(
    http: httpx.Client, kind: str, params: dict[str, Any], result: dict[str, Any]
) -> None:
    job = submit(http, kind, params)
    done = wait_for(http, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["result"] == result
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]


def test_heavy_progress_is_stored(http: httpx.Client) -> None:
    job = submit(http, "sleep", {"seconds": 2, "steps": 4})
    running = wait_for(http, job["id"], "running")
    assert running["started_at"]
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = http.get(f"/jobs/{job['id']}").json()
        if current["progress"]:
            seen.add(current["progress"]["percent"])
        if current["status"] == "succeeded":
            break
        time.sleep(0.1)
    assert current["progress"] == {
        "current": 4,
        "total": 4,
        "percent": 100.0,
        "message": "step 4/4",
    }
    assert len(seen) >= 2, seen


def test_cancel_queued_job_is_immediate(http: httpx.Client) -> None:
    job = submit(http, "sleep", {"seconds": 1}, delay_seconds=60)
    response = http.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["error"]["type"] == "cancelled"
    assert http.post(f"/jobs/{job['id']}/cancel").status_code == 409


def test_cancel_running_job_stops_it(http: httpx.Client) -> None:
    job = submit(http, "sleep", {"seconds": 60, "steps": 600})
    wait_for(http, job["id"], "running")
    response = http.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    done = wait_for(http, job["id"], "cancelled", "succeeded", "failed", timeout=5)
    assert done["status"] == "cancelled"
    assert done["error"]["type"] == "cancelled"


def test_handler_that_ignores_cancel_is_stopped_after_grace(
    http: httpx.Client, running: Running
) -> None:
    job = submit(http, "stubborn", {"seconds": 60})
    wait_for(http, job["id"], "running")
    http.post(f"/jobs/{job['id']}/cancel")
    done = wait_for(http, job["id"], "cancelled", "succeeded", "failed", timeout=8)
    assert done["status"] == "cancelled"
    # The worker recycled the child holding the handler, and still runs new jobs.
    running.worker.wait_for_log(f"job {job['id']}: recycling this worker process", timeout=5)
    after = submit(http, "sleep", {"seconds": 0.1, "steps": 1})
    assert wait_for(http, after["id"], "succeeded", "failed")["status"] == "succeeded"


def test_retries_then_succeeds(http: httpx.Client) -> None:
    job = submit(http, "fail", {"message": "flaky", "fail_times": 2}, max_attempts=3)
    done = wait_for(http, job["id"], "succeeded", "failed", timeout=30)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert done["result"] == {"attempts": 3}


def test_fails_when_attempts_run_out(http: httpx.Client) -> None:
    job = submit(http, "fail", {"message": "always"}, max_attempts=2)
    done = wait_for(http, job["id"], "failed", "succeeded", timeout=30)
    assert done["status"] == "failed"
    assert done["attempts"] == 2
    assert done["error"] == {"type": "error", "message": "RuntimeError: always"}


def test_non_retryable_error_fails_at_once(http: httpx.Client) -> None:
    job = submit(http, "fail", {"message": "fatal", "retryable": False}, max_attempts=3)
    done = wait_for(http, job["id"], "failed", "succeeded")
    assert done["attempts"] == 1
    assert done["error"] == {"type": "error", "message": "PermanentError: fatal"}


def test_timeout_fails_the_job(http: httpx.Client) -> None:
    job = submit(http, "sleep", {"seconds": 30, "steps": 300}, timeout_seconds=1)
    done = wait_for(http, job["id"], "failed", "succeeded", timeout=10)
    assert done["status"] == "failed"
    assert done["error"]["type"] == "timeout"


@pytest.mark.parametrize("kind", ["echo", "sleep"])
def test_delayed_job_waits_until_due(http: httpx.Client, kind: str) -> None:
    params = {"message": "later"} if kind == "echo" else {"seconds": 0.1, "steps": 1}
    job = submit(http, kind, params, delay_seconds=1.5)
    assert http.get(f"/jobs/{job['id']}").json()["status"] == "queued"
    done = wait_for(http, job["id"], "succeeded", "failed", timeout=15)
    assert done["status"] == "succeeded"
    started = datetime.fromisoformat(done["started_at"])
    assert started >= datetime.fromisoformat(job["run_at"])


def test_retry_endpoint_makes_a_new_job(http: httpx.Client) -> None:
    job = submit(http, "echo", {"message": "again"})
    wait_for(http, job["id"], "succeeded")
    response = http.post(f"/jobs/{job['id']}/retry")
    assert response.status_code == 202
    again = response.json()
    assert again["id"] != job["id"] and again["params"] == job["params"]
    assert response.headers["Location"] == f"/jobs/{again['id']}"
    assert wait_for(http, again["id"], "succeeded")["result"] == {"message": "again"}


def test_tenancy_on_every_endpoint(http: httpx.Client, base_url: str, settings: Settings) -> None:
    job = submit(http, "sleep", {"seconds": 0.1, "steps": 1})
    wait_for(http, job["id"], "succeeded")
    other = {"Authorization": f"Bearer {issue_token(settings, 'mallory')}"}
    with httpx.Client(base_url=base_url, headers=other, timeout=10) as mallory:
        assert mallory.get(f"/jobs/{job['id']}").status_code == 404
        assert mallory.post(f"/jobs/{job['id']}/cancel").status_code == 404
        assert mallory.post(f"/jobs/{job['id']}/retry").status_code == 404
        assert job["id"] not in [item["id"] for item in mallory.get("/jobs").json()["items"]]
    with httpx.Client(base_url=base_url, timeout=10) as anonymous:
        response = anonymous.get(f"/jobs/{job['id']}")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
