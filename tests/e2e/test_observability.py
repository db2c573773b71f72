"""What an operator sees: JSON logs that follow a request into the worker, and /metrics figures
after known work, from uvicorn and from Gunicorn with several worker processes."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cli.processes import flower_argv, flower_env
from cli.servers import free_port
from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import Servers
from tests.e2e.processes import Managed, child_env, start_api, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample of a Prometheus text exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def json_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["finished_at"]:
            return job
        time.sleep(0.1)
    raise TimeoutError(job_id)


@pytest.fixture
def json_settings(own_broker: Settings, own_database: str) -> Settings:
    """A stack of its own: its Redis database holds only its figures, and its Postgres only
    its jobs (jobs by status are counted there)."""
    return own_broker.model_copy(
        update={"log_format": "json", "worker_heartbeat": 1.0, "database_url": own_database}
    )


@dataclass
class Stack:
    api: Managed
    worker: Managed
    client: httpx.Client
    token: str


@contextlib.contextmanager
def stack(settings: Settings, servers: Servers, name: str) -> Iterator[Stack]:
    """A worker and an API of their own, and a client signed in to it; stopped at the end."""
    logs = servers.tmp / "logs" / f"{name}-{uuid.uuid4().hex[:8]}"
    worker = start_worker(settings, logs, name=name)
    api = start_api(settings, free_port(), logs)
    port = api.command[api.command.index("--port") + 1]
    token = issue_token(settings, name, ttl=600)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ) as client:
            yield Stack(api, worker, client, token)
    finally:
        api.stop()
        worker.stop()


def test_logs_are_json_and_follow_the_request_into_the_worker(
    json_settings: Settings, servers: Servers
) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    with stack(json_settings, servers, "observed") as running:
        answer = running.client.post(
            f"/jobs?token={running.token}",
            json={"kind": "primes", "params": {"limit": 1000}},
            headers={"X-Request-ID": request_id},
        )
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Request-ID"] == request_id
        job_id = answer.json()["id"]
        assert wait_finished(running.client, job_id)["status"] == "succeeded"
    api, worker, token = running.api, running.worker, running.token

    # Every line the API wrote is one JSON object; its access line carries the request id,
    # and no line carries the token (the query string is never logged).
    api_log = api.log()
    api_lines = [json.loads(line) for line in api_log.splitlines() if line.strip()]
    access = [line for line in api_lines if line.get("logger") == "jobq.access"]
    assert any(
        line["request_id"] == request_id and line["path"] == "/jobs" and line["status"] == 202
        for line in access
    ), access
    assert token not in api_log

    # The worker's lines for this job name the job, its kind and attempt, and the request.
    worker_lines = json_lines(worker.log())
    assert worker_lines, worker.log()[-2000:]
    for_job = [line for line in worker_lines if line.get("job_id") == job_id]
    assert any("succeeded" in line["event"] for line in for_job), worker_lines[-20:]
    for line in for_job:
        assert line["request_id"] == request_id
        assert line["kind"] == "primes"
        assert line["attempt"] == 1
        assert line["level"] in {"info", "warning"}
        assert "timestamp" in line


def test_metrics_after_known_work(json_settings: Settings, servers: Servers) -> None:
    with stack(json_settings, servers, "metered") as running:
        client = running.client
        heavy = [
            client.post("/jobs", json={"kind": "primes", "params": {"limit": 500}}).json()
            for _ in range(3)
        ]
        quick = client.post("/jobs", json={"kind": "echo", "params": {"message": "hi"}})
        failing = client.post(
            "/jobs", json={"kind": "fail", "params": {"message": "no"}, "max_attempts": 1}
        )
        assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
        assert client.get("/no-such-page").status_code == 404
        for job in [*heavy, quick.json(), failing.json()]:
            wait_finished(client, job["id"])
        # Each API process caches the shared figures for a few seconds.
        time.sleep(5.5)
        text = client.get("/metrics").text

    found = samples(text)
    assert found['jobq_jobs_submitted_total{kind="primes"}'] == 3
    assert found['jobq_jobs_submitted_total{kind="echo"}'] == 1
    # Three finished on the worker, one on the API's quick lane, one failed on the worker.
    assert found['jobq_jobs_finished_total{kind="primes",status="succeeded"}'] == 3
    assert found['jobq_jobs_finished_total{kind="echo",status="succeeded"}'] == 1
    assert found['jobq_jobs_finished_total{kind="fail",status="failed"}'] == 1
    assert found['jobq_job_duration_seconds_count{kind="primes"}'] == 3
    assert found['jobq_job_duration_seconds_bucket{kind="primes",le="+Inf"}'] == 3
    assert 0 < found['jobq_job_duration_seconds_sum{kind="primes"}'] < 30
    assert found['jobq_queue_wait_seconds_count{kind="primes"}'] == 3
    assert found['jobq_queue_wait_seconds_count{kind="echo"}'] == 1
    assert found['jobq_jobs{status="queued"}'] == 0
    assert found['jobq_jobs{status="running"}'] == 0
    assert found["jobq_workers_alive"] == 1
    for queue in ("jobq.high", "jobq.normal", "jobq.low"):
        assert found[f'jobq_queue_depth{{queue="{queue}"}}'] == 0
    assert found['http_requests_total{handler="/jobs",method="POST",status="202"}'] == 5
    assert found['http_requests_total{handler="/jobs/{job_id}",method="GET",status="404"}'] == 1
    assert found['http_requests_total{handler="none",method="GET",status="404"}'] == 1
    assert found['http_request_duration_seconds_count{handler="/jobs",method="POST"}'] == 5
    assert found['jobq_event_streams{transport="websocket"}'] == 0
    # Labels name routes, kinds and statuses: never a job id or a raw path.
    assert not UUID.search(text)
    assert "no-such-page" not in text


def start_gunicorn(settings: Settings, port: int, log_dir: Path, metrics_dir: Path) -> Managed:
    command = [
        sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "api.main:create_app()",
    ]  # fmt: skip
    env = child_env(settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    api = Managed("gunicorn", command, env, log_dir / f"gunicorn-{port}.log").start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        api.check_alive()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    api.stop()
    raise TimeoutError(f"gunicorn did not start:\n{api.log()[-3000:]}")


def test_metrics_add_up_across_gunicorn_workers(
    json_settings: Settings, servers: Servers, tmp_path: Path
) -> None:
    port = free_port()
    api = start_gunicorn(json_settings, port, tmp_path, tmp_path / "prometheus")
    pids: set[str] = set()
    health = 'http_requests_total{handler="/health",method="GET",status="200"}'
    try:
        # The start-up probes already counted some.
        before = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)[health]
        for _ in range(60):
            # A new connection each time, so both Gunicorn workers take some.
            answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            assert answer.status_code == 200
        scrapes = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10) for _ in range(6)]
        pids = {path.name for path in (tmp_path / "prometheus").glob("counter_*.db")}
    finally:
        api.stop()
    assert len(pids) == 2, pids  # both workers counted requests
    for scrape in scrapes:
        # Whichever worker answered, the count is the sum over both.
        found = samples(scrape.text)
        assert found[health] == before + 60
    assert json_lines(api.log())


def test_flower_sees_every_job_though_workers_start_without_task_events(
    own_broker: Settings, servers: Servers, subject: str
) -> None:
    """Workers send no Celery task events until asked; Flower asks (enable_events) when it
    starts, and from then on shows each job's task."""
    logs = servers.tmp / "logs"
    settings = own_broker.model_copy(
        update={"flower_port": free_port(), "flower_password": SecretStr("flower-test-password")}
    )
    assert not settings.worker_task_events
    api = start_api(settings, free_port(), logs)
    worker = start_worker(settings, logs, name="flowerless")
    flower = Managed(
        "flower",
        flower_argv(settings),
        {**child_env(settings), **flower_env(settings)},
        logs / f"flower-{settings.flower_port}.log",
    ).start()
    flower_url = f"http://127.0.0.1:{settings.flower_port}"
    auth = ("admin", "flower-test-password")
    try:
        base = api.command[api.command.index("--port") + 1]
        headers = {"Authorization": f"Bearer {issue_token(settings, subject)}"}
        body = {"kind": "sleep", "params": {"seconds": 0.1}}
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        ids: set[str] = set()
        while time.monotonic() < deadline:
            flower.check_alive()
            # One job a second, until Flower has shown three of them run.
            answer = httpx.post(f"http://127.0.0.1:{base}/jobs", json=body, headers=headers)
            assert answer.status_code == 202, answer.text
            ids.add(answer.json()["id"])
            with contextlib.suppress(httpx.HTTPError, ValueError):
                tasks = httpx.get(f"{flower_url}/api/tasks", auth=auth, timeout=2).json()
                seen = {
                    match
                    for task in tasks.values()
                    if task["name"] == "jobq.run_job" and task["state"] == "SUCCESS"
                    for match in UUID.findall(str(task.get("kwargs")))
                }
            if len(seen & ids) >= 3:
                break
            time.sleep(1)
        assert len(seen & ids) >= 3, f"Flower showed {seen}, jobs were {ids}"
    finally:
        flower.stop()
        worker.stop()
        api.stop()
