"""HTTP load from wrk (Debian's package), a C load generator in a process of its own."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"


@dataclass(frozen=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # non-2xx/3xx answers, socket errors and timeouts
    cpu_percent: float  # wrk's own CPU (user + system) over the run, in % of one core


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    script: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 2,
    env: dict[str, str] | None = None,
) -> Load:
    """One wrk run of `seconds` against `url` with bench/lua/<script>."""
    if not available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(LUA / script), url,
    ]  # fmt: skip
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        command,
        env={**os.environ, "BENCH_LUA_DIR": str(LUA), **(env or {})},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    figures = json.loads(lines[-1])
    duration = figures["duration_us"] / 1e6
    errors = sum(
        figures[name]
        for name in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return Load(
        requests_per_s=figures["requests"] / duration,
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        requests=figures["requests"],
        errors=errors,
        cpu_percent=100.0 * cpu / wall,
    )
