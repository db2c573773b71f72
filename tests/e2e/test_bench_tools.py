"""The benchmarks' own load generator counts what it claims to (bench/submit.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import auth

pytestmark = pytest.mark.e2e


def submit(base_url: str, token: str, count: int, concurrency: int, body: str) -> Any:
    """Run the submitter; its report."""
    command = [sys.executable, "-m", "bench.submit", base_url, token, str(count)]
    out = subprocess.run(
        [*command, str(concurrency), body], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_submitter_makes_exactly_the_jobs_it_reports(base_url: str, token: str) -> None:
    body = json.dumps({"kind": "echo", "params": {"message": "bench"}, "delay_seconds": 3600})
    report = submit(base_url, token, 45, 4, body)
    assert (report["accepted"], report["errors"]) == (45, 0)
    assert report["seconds"] > 0 and report["cpu_seconds"] >= 0
    listed = httpx.get(f"{base_url}/jobs?limit=100", headers=auth(token), timeout=10).json()
    assert len(listed["items"]) == 45
    assert {job["params"]["message"] for job in listed["items"]} == {"bench"}


def test_the_submitter_counts_refusals_as_errors(base_url: str) -> None:
    body = json.dumps({"kind": "echo", "params": {"message": "bench"}})
    report = submit(base_url, "not-a-token", 6, 2, body)
    assert (report["accepted"], report["errors"]) == (0, 6)
