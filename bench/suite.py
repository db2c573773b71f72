"""`make bench`: jobq measured beside its baselines, in one run on one machine.

    .venv/bin/python -m bench                   # everything, 3 runs per figure
    .venv/bin/python -m bench --only submissions --runs 5
    .venv/bin/python -m bench --help

1. Submissions: POST /jobs of a heavy kind (auth, validation, idempotency key) under wrk at 64
   connections, on 1 and 2 uvicorn processes; beside it FastAPI's hello world, the FastAPI
   floor (bench/floor.py: the same request and models, no I/O) and a naive tutorial job API
   (bench/naive.py), served the same way.
2. Heavy lane: N no-op jobs submitted until all have succeeded in Postgres (2 API processes,
   one worker with 2 children); beside it raw Celery (bench/rawcelery.py), same pool and
   concurrency.
3. Quick lane: one echo job at a time, from POST to its succeeded event on /ws/jobs.
4. Fan-out: 1 job x 1000 watchers and 100 jobs x 10 watchers on one API process (bench/fanout).
5. Memory: API and worker RSS at rest and under load.

Figures are medians over --runs runs, with min and max. Output: a table, bench/results/latest.json
(one object per figure) and bench/results/latest.png. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import websockets
from redis import Redis
from rich.console import Console
from rich.table import Table

from bench import chart, fanout, probe, wrk
from bench.rawcelery import COUNTER
from bench.servers import (
    floor_api,
    hello_api,
    jobq_api,
    jobq_worker,
    naive_api,
    raw_env,
    raw_sender,
    raw_worker,
)
from bench.stack import Stack, _plain, unwind_on_signals
from tests.e2e.processes import Managed

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("submissions", "heavy", "quick", "fanout")
HEAVY_BODY = json.dumps({"kind": "sleep", "params": {"seconds": 0, "steps": 1}})
QUICK_BODY = {"kind": "echo", "params": {"message": "hi"}}
WORKER_CONCURRENCY = 2
# Settings for the stack under test: the rate limit and the cap on active jobs out of the way
# (one subject sends all the load, and its jobs pile up: no worker runs while submissions are
# measured), and no re-dispatch of those waiting jobs meanwhile.
OVERRIDES: dict[str, object] = {
    "rate_limit": "100000000/minute",
    "max_active_jobs_per_subject": 10_000_000,
    "claim_timeout": 3600.0,
}
MB = probe.MB


@dataclass
class Figure:
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    baseline: str | None = None
    also: tuple[str, ...] = ()  # further baselines, reported as ratios
    target: str | None = None
    check: Callable[[Figure, dict[str, Figure]], bool] | None = None

    @property
    def value(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    def ratio(self, other: Figure | None) -> float | None:
        if other is None or not self.value or not other.value:
            return None
        return self.value / other.value


class Results:
    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def add(self, name: str, unit: str, value: float | None, **options: Any) -> None:
        figure = self.figures.setdefault(name, Figure(name, unit, **options))
        if value is not None:
            figure.runs.append(value)

    def met(self, figure: Figure) -> bool | None:
        if figure.check is None or figure.value is None:
            return None
        return figure.check(figure, self.figures)

    def as_json(self) -> list[dict[str, Any]]:
        out = []
        for figure in self.figures.values():
            base = self.figures.get(figure.baseline) if figure.baseline else None
            item: dict[str, Any] = {
                "name": figure.name,
                "value": figure.value,
                "unit": figure.unit,
                "min": min(figure.runs, default=None),
                "max": max(figure.runs, default=None),
                "runs": figure.runs,
            }
            if figure.baseline:
                item["baseline"] = figure.baseline
                item["ratio"] = figure.ratio(base)
            for other in figure.also:
                item.setdefault("ratios", {})[other] = figure.ratio(self.figures.get(other))
            if figure.target:
                item["target"] = figure.target
                item["met"] = self.met(figure)
            out.append(item)
        return out


def at_least(fraction: float, of: str) -> Callable[[Figure, dict[str, Figure]], bool]:
    def check(figure: Figure, figures: dict[str, Figure]) -> bool:
        ratio = figure.ratio(figures.get(of))
        return ratio is not None and ratio >= fraction

    return check


def below(limit: float) -> Callable[[Figure, dict[str, Figure]], bool]:
    return lambda figure, _: figure.value is not None and figure.value < limit


def above(limit: float) -> Callable[[Figure, dict[str, Figure]], bool]:
    return lambda figure, _: figure.value is not None and figure.value >= limit


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# 1. Submissions ---------------------------------------------------------------------------


def submissions(
    stack: Stack, args: argparse.Namespace, results: Results, console: Console
) -> list[str]:
    """Returns what went wrong: a run with failed requests does not measure what it says."""
    settings = stack.settings
    assert settings is not None
    token = stack.token()
    problems = []
    for processes in args.processes:
        label = f"{processes} process{'es' if processes > 1 else ''}"
        hello = f"submissions hello world, {label}"
        floor = f"submissions FastAPI floor, {label}"
        naive = f"submissions naive API, {label}"
        jobq = f"submissions jobq, {label}"
        keyed = {"BENCH_BODY": HEAVY_BODY, "BENCH_TOKEN": token}
        variants: list[tuple[str, Callable[[], tuple[Managed, str]], str, dict[str, str]]] = [
            (hello, partial(hello_api, processes, args.log_dir), "get.lua", {}),
            (floor, partial(floor_api, processes, args.log_dir), "post_jobs.lua", keyed),
            (
                naive,
                partial(naive_api, settings, processes, args.log_dir),
                "post_jobs.lua",
                {"BENCH_BODY": HEAVY_BODY},
            ),
            (
                jobq,
                partial(jobq_api, settings, processes, args.log_dir),
                "post_jobs.lua",
                keyed,
            ),
        ]
        if args.jobq_only:
            variants = [variant for variant in variants if variant[0] == jobq]
        for name, start, script, env in variants:
            server, base = start()
            assert server.process is not None
            pid = server.process.pid
            url = base if script == "get.lua" else base + "/jobs"
            try:
                results.add(f"{name}: RSS at rest", "MB", probe.tree_rss(pid) / MB)
                # Warm-up (connections, caches, Postgres plans); not counted.
                wrk.run(url, script, seconds=3, connections=args.connections, env=env)
                for number in range(args.runs):
                    stack.reset()
                    run_env = {**env, "BENCH_RUN": uuid.uuid4().hex[:8]}
                    cpu_before = probe.tree_cpu(pid)
                    started = time.monotonic()
                    with probe.TreePeak(pid) as peak:
                        load = wrk.run(
                            url,
                            script,
                            seconds=args.seconds,
                            connections=args.connections,
                            env=run_env,
                        )
                    server_cpu = 100 * (probe.tree_cpu(pid) - cpu_before)
                    server_cpu /= time.monotonic() - started
                    options: dict[str, Any] = {}
                    if name == jobq:
                        options = {
                            "baseline": hello,
                            "also": (naive, floor),
                            "target": ">= 35% of hello world and >= 3x the naive API",
                            "check": lambda f, figs, h=hello, n=naive: (
                                at_least(0.35, h)(f, figs) and at_least(3.0, n)(f, figs)
                            ),
                        }
                    results.add(name, "req/s", load.requests_per_s, **options)
                    results.add(f"{name}: p50", "ms", load.p50_ms)
                    p99: dict[str, Any] = (
                        {"target": "< 50 ms", "check": below(50)} if name == jobq else {}
                    )
                    results.add(f"{name}: p99", "ms", load.p99_ms, **p99)
                    results.add(f"{name}: errors", "requests", load.errors)
                    if load.errors:
                        problems.append(f"{name} run {number + 1}: {load.errors} failed requests")
                    results.add(f"{name}: server CPU", "% of a core", server_cpu)
                    results.add(f"{name}: wrk CPU", "% of a core", load.cpu_percent)
                    results.add(f"{name}: RSS under load", "MB", peak.peak / MB)
                    console.print(
                        f"  {name} run {number + 1}: {load.requests_per_s:,.0f} req/s, "
                        f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, "
                        f"errors {load.errors}, server CPU {server_cpu:.0f}%, "
                        f"wrk CPU {load.cpu_percent:.0f}%"
                    )
            finally:
                server.stop()
    return problems


# 2. Heavy lane ------------------------------------------------------------------------------


SUCCEEDED = "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
# Answered from the partial index of active jobs (ix_jobs_owner_active): its cost follows the
# jobs in flight, not the table. Counting the succeeded every 20 ms instead scanned a table
# that grew by every run, and took a growing share of the machine from the lane it timed.
ACTIVE = "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"


async def _succeeded(database_url: str) -> int:
    connection = await asyncpg.connect(_plain(database_url), timeout=10)
    try:
        return int(await connection.fetchval(SUCCEEDED))
    finally:
        await connection.close()


async def _wait_for_count(
    read: Callable[[], Awaitable[int]], target: int, within: float
) -> float | None:
    """Poll until read() >= target; returns the time.monotonic() it was seen, None if it was
    not within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await read() >= target:
            return time.monotonic()
        await asyncio.sleep(0.02)
    return None


async def _wait_drained(
    database_url: str, submitter: subprocess.Popen[str], within: float
) -> float | None:
    """The time.monotonic() at which the submitter had exited and no job was queued or
    running; None if that was not within `within` seconds."""
    connection = await asyncpg.connect(_plain(database_url), timeout=10)
    try:

        async def drained() -> int:
            if submitter.poll() is None:
                return 0
            return int(await connection.fetchval(ACTIVE) == 0)

        return await _wait_for_count(drained, 1, within)
    finally:
        await connection.close()


def heavy(
    stack: Stack,
    api_base: str,
    worker: Managed,
    args: argparse.Namespace,
    results: Results,
    prefetch: int = 1,
) -> list[str]:
    """jobq's heavy lane end to end; returns what went wrong, if anything. Only the default
    (JOBQ_WORKER_PREFETCH=1) run is held to the target and reports the side figures."""
    settings = stack.settings
    assert settings is not None and worker.process is not None
    problems = []
    name = "heavy lane jobq"
    if prefetch != 1:
        name += f", JOBQ_WORKER_PREFETCH={prefetch}"
    for number in range(args.runs):
        before = asyncio.run(_succeeded(settings.database_url))
        with probe.TreePeak(worker.process.pid) as worker_peak:
            started = time.monotonic()
            command = [sys.executable, "-m", "bench.submit", api_base, stack.token()]
            command += [str(args.jobs), "32", HEAVY_BODY]
            submitter = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            finished = asyncio.run(
                _wait_drained(settings.database_url, submitter, args.heavy_timeout)
            )
            out, _ = submitter.communicate(timeout=60)
        succeeded = asyncio.run(_succeeded(settings.database_url)) - before
        sent = json.loads(out.strip().splitlines()[-1])
        if finished is None or sent["errors"] or succeeded != args.jobs:
            problems.append(
                f"{name} run {number + 1}: {sent}, finished={finished}, succeeded={succeeded}"
            )
            continue
        rate = args.jobs / (finished - started)
        print(f"  {name} run {number + 1}: {rate:,.0f} jobs/s ({args.jobs} jobs)", flush=True)
        if prefetch != 1:
            results.add(name, "jobs/s", rate, baseline="heavy lane raw Celery")
            continue
        results.add(
            name,
            "jobs/s",
            rate,
            baseline="heavy lane raw Celery",
            target=">= 70% of raw Celery",
            check=at_least(0.70, "heavy lane raw Celery"),
        )
        results.add(f"{name}: submissions", "req/s", args.jobs / sent["seconds"])
        results.add(
            f"{name}: submitter CPU", "% of a core", 100 * sent["cpu_seconds"] / sent["seconds"]
        )
        results.add("worker RSS under load (jobq, 2 children)", "MB", worker_peak.peak / MB)
    return problems


RAW_DELIVERIES = {
    "celery": "heavy lane raw Celery",
    # The part of the gap that is the delivery guarantee alone (acks late, prefetch 1).
    "jobq": "heavy lane raw Celery, jobq's delivery settings",
}


def raw_celery(
    stack: Stack, args: argparse.Namespace, results: Results, delivery: str = "celery"
) -> list[str]:
    settings = stack.settings
    assert settings is not None
    problems = []
    name = RAW_DELIVERIES[delivery]
    worker = raw_worker(settings, args.log_dir, WORKER_CONCURRENCY, delivery)
    assert worker.process is not None
    redis = Redis.from_url(settings.redis_url)
    try:
        if delivery == "celery":
            results.add(
                "worker RSS at rest (raw Celery, 2 children)",
                "MB",
                probe.tree_rss(worker.process.pid) / MB,
            )
        for number in range(args.runs):
            redis.set(COUNTER, 0)
            started = time.monotonic()
            sender = subprocess.Popen(raw_sender(args.jobs), env=raw_env(settings))

            async def count() -> int:
                return int(redis.get(COUNTER) or 0)

            finished = asyncio.run(_wait_for_count(count, args.jobs, args.heavy_timeout))
            sender.wait(60)
            if finished is None or sender.returncode != 0:
                problems.append(f"{name} run {number + 1}: finished={finished}")
                continue
            rate = args.jobs / (finished - started)
            compared = {} if delivery == "celery" else {"baseline": RAW_DELIVERIES["celery"]}
            results.add(name, "jobs/s", rate, **compared)
            print(f"  {name} run {number + 1}: {rate:,.0f} jobs/s", flush=True)
    finally:
        redis.close()
        worker.stop()
    return problems


# 3. Quick lane ------------------------------------------------------------------------------


async def quick(api_base: str, token: str, count: int) -> tuple[list[float], int]:
    """Submit `count` echo jobs one at a time; for each, the time from sending the POST to
    receiving its succeeded event on the /ws/jobs firehose (ms). Returns them and the misses."""
    seen: dict[str, float] = {}
    arrived = asyncio.Event()
    ws_url = api_base.replace("http://", "ws://") + "/ws/jobs"
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    missed = 0
    async with websockets.connect(ws_url, additional_headers=headers) as socket:

        async def read() -> None:
            async for raw in socket:
                event = json.loads(raw)
                if event.get("type") == "status" and event.get("status") == "succeeded":
                    seen[str(event["job_id"])] = time.perf_counter()
                    arrived.set()

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.5)  # the subscription is in place
        async with httpx.AsyncClient(base_url=api_base, headers=headers, timeout=10) as http:
            for _ in range(count):
                sent = time.perf_counter()
                response = await http.post("/jobs", json=QUICK_BODY)
                response.raise_for_status()
                job_id = str(response.json()["id"])
                deadline = sent + 10
                while job_id not in seen and time.perf_counter() < deadline:
                    arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), deadline - time.perf_counter())
                if job_id in seen:
                    latencies.append(1000 * (seen[job_id] - sent))
                else:
                    missed += 1
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await reader
    return latencies, missed


# 4. Fan-out ---------------------------------------------------------------------------------

# One job's progress written every 40 ms: about 22 events a second (the 10 ms steps of `sleep`
# round each write up a little), so 1000 watchers ask for more than the 20,000 messages a second
# the target is set at. At 50 ms they asked for about 17,700, below the target.
FANOUT = (
    fanout.Scenario(1, 1000, seconds=10, steps=1000, progress_interval=0.04, clients=2),
    fanout.Scenario(100, 10, seconds=1, steps=100, progress_interval=0.05, clients=2),
)


def fan_out(args: argparse.Namespace, results: Results, console: Console) -> list[str]:
    problems = []
    stack = Stack(args.log_dir, embedded=args.embedded)
    try:
        stack.start()
        for scenario in FANOUT:
            name = f"fan-out {scenario.jobs} job{'s' if scenario.jobs > 1 else ''} x "
            name += f"{scenario.watchers_per_job} watchers"
            one_job = scenario.jobs == 1
            for number in range(args.runs):
                details = fanout.run_once(stack, scenario, number + 1, console, deflate=True)
                f = details["figures"]
                if f["terminal"] != scenario.sockets or f["missed"]:
                    problems.append(f"{name} run {number + 1}: {f}")
                delivered: dict[str, Any] = (
                    {"target": ">= 20,000 events/s", "check": above(20_000)} if one_job else {}
                )
                results.add(name, "events/s", f["delivered"], **delivered)
                p99: dict[str, Any] = {"target": "< 50 ms", "check": below(50)} if one_job else {}
                results.add(f"{name}: p50", "ms", f["latency_p50"])
                results.add(f"{name}: p99", "ms", f["latency_p99"], **p99)
                rss: dict[str, Any] = (
                    {"target": "< 150 MB", "check": below(150)} if scenario.sockets >= 1000 else {}
                )
                results.add(f"{name}: API RSS, sockets open", "MB", f["rss_open"], **rss)
                results.add(f"{name}: API RSS peak", "MB", f["rss_peak"])
                results.add(f"{name}: client CPU", "% of a core", f["client_cpu"])
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
    return problems


# The run ------------------------------------------------------------------------------------


def lanes(stack: Stack, args: argparse.Namespace, results: Results, console: Console) -> list[str]:
    """Heavy and quick lanes, on 2 API processes and one worker (2 children)."""
    settings = stack.settings
    assert settings is not None
    problems: list[str] = []
    # A worker runs, so jobs are claimed: dispatch as in production.
    live = settings.model_copy(update={"claim_timeout": 30.0})
    stack.reset()
    server, base = jobq_api(live, 2, args.log_dir)
    worker = None
    try:
        assert server.process is not None
        results.add("API RSS at rest (2 processes)", "MB", probe.tree_rss(server.process.pid) / MB)
        if "heavy" in args.only:
            for delivery in RAW_DELIVERIES:
                problems += raw_celery(stack, args, results, delivery)
            worker = jobq_worker(live, args.log_dir, WORKER_CONCURRENCY)
            assert worker.process is not None
            rest = probe.tree_rss(worker.process.pid) / MB
            results.add("worker RSS at rest (jobq, 2 children)", "MB", rest)
            with probe.TreePeak(server.process.pid) as api_peak:
                problems += heavy(stack, base, worker, args, results)
            results.add("API RSS under load (2 processes)", "MB", api_peak.peak / MB)
            worker.stop()
            # The same with JOBQ_WORKER_PREFETCH=4 (Celery's default multiplier).
            ahead = live.model_copy(update={"worker_prefetch": 4})
            worker = jobq_worker(ahead, args.log_dir, WORKER_CONCURRENCY, "bench-worker-prefetch4")
            problems += heavy(stack, base, worker, args, results, prefetch=4)
        if "quick" in args.only:
            for number in range(args.runs):
                latencies, missed = asyncio.run(quick(base, stack.token(), args.quick_jobs))
                if missed:
                    problems.append(f"quick run {number + 1}: {missed} jobs not seen succeed")
                p50 = percentile(latencies, 0.5)
                results.add(
                    "quick lane submit -> succeeded: p50",
                    "ms",
                    p50,
                    target="< 10 ms",
                    check=below(10),
                )
                p99 = percentile(latencies, 0.99)
                results.add("quick lane submit -> succeeded: p99", "ms", p99)
                console.print(
                    f"  quick run {number + 1}: p50 {p50 or 0:.1f} ms, "
                    f"p99 {p99 or 0:.1f} ms, missed {missed}"
                )
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    return problems


def print_table(console: Console, results: Results) -> None:
    table = Table(title="jobq benchmark (median of the runs, min-max)", show_lines=False)
    for column in ("figure", "median", "min-max", "unit", "vs baseline", "target", "met"):
        table.add_column(column, justify="left" if column in ("figure", "unit") else "right")
    for item in results.as_json():
        if item["value"] is None:
            continue
        ratio = item.get("ratio")
        ratios = [f"{ratio:.2f}x {item['baseline']}"] if ratio else []
        others = item.get("ratios", {}).items()
        ratios += [f"{value:.2f}x {name}" for name, value in others if value]
        met = item.get("met")
        table.add_row(
            item["name"],
            f"{item['value']:,.1f}",
            f"{item['min']:,.1f}-{item['max']:,.1f}",
            item["unit"],
            "\n".join(ratios),
            item.get("target", ""),
            "" if met is None else ("yes" if met else "[red]no[/red]"),
        )
    console.print(table)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=1000, help="heavy lane jobs per run")
    parser.add_argument("--heavy-timeout", type=float, default=300.0)
    parser.add_argument("--quick-jobs", type=int, default=200, help="quick lane jobs per run")
    parser.add_argument(
        "--jobq-only",
        action="store_true",
        help="submissions: skip hello world, the FastAPI floor and naive",
    )
    parser.add_argument("--embedded", action="store_true", help="embedded servers even if local")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs is 1..20")
    args.embedded = True if args.embedded else None
    return args


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    unwind_on_signals()
    console = Console(width=max(Console().width, 160))
    if "submissions" in args.only and not wrk.available():
        console.print("[red]wrk is not installed: apt-get install wrk (Debian/Ubuntu)")
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.log_dir = RESULTS / "logs" / stamp
    results = Results()
    problems: list[str] = []
    started = time.monotonic()
    about = machine()
    console.print(f"jobq benchmark {stamp}: {about}; logs in {args.log_dir}")
    stack = Stack(args.log_dir, embedded=args.embedded, with_api=False, overrides=OVERRIDES)
    try:
        stack.start()
        console.print(f"servers: {stack.where}")
        if "submissions" in args.only:
            console.print("[bold]1. submissions")
            problems += submissions(stack, args, results, console)
        if "heavy" in args.only or "quick" in args.only:
            console.print("[bold]2-3. heavy and quick lanes")
            problems += lanes(stack, args, results, console)
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
    if "fanout" in args.only:
        console.print("[bold]4. fan-out")
        problems += fan_out(args, results, console)
    print_table(console, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figures = results.as_json()
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    about_run = args.out.with_name(args.out.stem + "-run.json")
    about_run.write_text(
        json.dumps(
            {
                "started": stamp,
                "minutes": round((time.monotonic() - started) / 60, 1),
                "machine": about,
                "servers": stack.where,
                "args": {key: str(value) for key, value in vars(args).items()},
                "problems": problems,
            },
            indent=2,
        )
        + "\n"
    )
    picture = args.out.with_suffix(".png")
    chart.draw(figures, about, picture)
    console.print(f"wrote {args.out}, {about_run} and {picture}")
    for problem in problems:
        console.print(f"[red]problem: {problem}")
    return 1 if problems else 0
