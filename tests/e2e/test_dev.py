"""`jobq dev` (what `make run` calls) as a user runs it: up, a job through it, a crash of a
child restarted, Ctrl-C stopping everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from cli.servers import free_port
from shared.settings import Settings
from shared.tokens import issue_token
from tests.conftest import Servers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def wait_for_output(log: Path, text: str, process: subprocess.Popen[bytes], limit: float) -> str:
    deadline = time.monotonic() + limit
    while True:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} from jobq dev:\n{output[-3000:]}")
        time.sleep(0.2)


@pytest.fixture
def dev(
    own_broker: Settings, servers: Servers, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    database = f"jobq_dev_{os.getpid()}_{free_port()}"
    url = servers.create_database(database)
    api_port, flower_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBQ_")}
    env.update(
        JOBQ_DATABASE_URL=url,
        JOBQ_REDIS_URL=own_broker.redis_url,
        JOBQ_API_PORT=str(api_port),
        JOBQ_FLOWER_PORT=str(flower_port),
        JOBQ_DATA_DIR=str(tmp_path / ".jobq"),
        JOBQ_WORKER_CONCURRENCY="1",
        JOBQ_SHUTDOWN_GRACE="2",
        COLUMNS="200",
    )
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "dev"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, log, f"http://127.0.0.1:{api_port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        servers.drop_database(database)


def test_jobq_dev_runs_the_stack_restarts_a_dead_child_and_stops_cleanly(
    dev: tuple[subprocess.Popen[bytes], Path, str], tmp_path: Path
) -> None:
    process, log, api = dev
    output = wait_for_output(log, "jobq dev is up", process, 90)
    assert "curl" in output and "Flower" in output
    # Flower: on 127.0.0.1 only, behind the basic auth printed in the banner.
    flower = re.search(r"Flower\s+(http://127\.0\.0\.1:\d+)\s+user (\S+)\s+password (\S+)", output)
    assert flower is not None, output
    flower_url, user, password = flower.groups()
    for _ in range(50):
        try:
            refused = httpx.get(flower_url, timeout=5)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    assert refused.status_code == 401
    assert httpx.get(flower_url, auth=(user, password), timeout=5).status_code == 200
    secret = (tmp_path / ".jobq" / "secret_key").read_text().strip()
    token = issue_token(Settings(secret_key=secret), "dev-user")
    headers = {"Authorization": f"Bearer {token}"}
    children = {child.pid: child for child in psutil.Process(process.pid).children(recursive=True)}

    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        job = client.post(
            "/jobs", json={"kind": "sleep", "params": {"seconds": 0.2, "steps": 2}}
        ).json()
        for _ in range(100):
            if client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"

        worker = next(
            child
            for child in psutil.Process(process.pid).children()
            if "worker" in " ".join(child.cmdline()) and "flower" not in " ".join(child.cmdline())
        )
        worker.kill()
        wait_for_output(log, "restarting worker", process, 30)
        time.sleep(1)
        again = client.post(
            "/jobs", json={"kind": "sleep", "params": {"seconds": 0.1, "steps": 1}}
        ).json()
        for _ in range(150):
            if client.get(f"/jobs/{again['id']}").json()["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert client.get(f"/jobs/{again['id']}").json()["status"] == "succeeded"

    children.update(
        {child.pid: child for child in psutil.Process(process.pid).children(recursive=True)}
    )
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    _, alive = psutil.wait_procs(list(children.values()), timeout=10)
    assert alive == [], [proc.pid for proc in alive]
