"""The `jobq` client commands as a user runs them, against the running stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def jobq(
    base_url: str, token: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {"JOBQ_URL": base_url, "JOBQ_TOKEN": token, "PATH": "/usr/bin:/bin", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_submit_watch_draws_progress_and_exits_0_on_success(base_url: str, token: str) -> None:
    done = jobq(base_url, token, "submit", "sleep", "seconds=1", "steps=4", "--watch")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100%" in done.stdout
    assert '"slept": 1' in done.stdout


def test_submit_watch_exits_1_when_the_job_fails(base_url: str, token: str) -> None:
    done = jobq(base_url, token, "submit", "fail", "message=nope", "retryable=false", "--watch")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PermanentError: nope" in done.stdout


def test_watch_and_status_of_a_submitted_job(base_url: str, token: str) -> None:
    submitted = jobq(base_url, token, "submit", "echo", "message=from the cli")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = jobq(base_url, token, "watch", job_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    status = jobq(base_url, token, "status", job_id)
    assert json.loads(status.stdout)["result"] == {"message": "from the cli"}
    listed = jobq(base_url, token, "list", "--kind", "echo")
    assert job_id[:8] in listed.stdout


def test_retry_runs_a_finished_job_again(base_url: str, token: str) -> None:
    submitted = jobq(base_url, token, "submit", "echo", "message=again")
    original = submitted.stdout.strip()
    assert jobq(base_url, token, "watch", original).returncode == 0
    retried = jobq(base_url, token, "retry", original, "--watch")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    new_id = retried.stdout.split(":", 1)[0].strip()
    assert new_id != original
    again = json.loads(jobq(base_url, token, "status", new_id).stdout)
    assert again["status"] == "succeeded"
    assert again["result"] == {"message": "again"}


def test_bad_params_exit_2_with_the_field_named(base_url: str, token: str) -> None:
    done = jobq(base_url, token, "submit", "sleep", "seconds=-1")
    assert done.returncode == 2
    assert "params.seconds" in done.stdout + done.stderr


def test_unreachable_api_exits_3(token: str) -> None:
    done = jobq("http://127.0.0.1:9", token, "status", "00000000-0000-0000-0000-000000000000")
    assert done.returncode == 3
