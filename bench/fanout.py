"""Live-event fan-out on ONE API process: events delivered per second to N watchers, how late,
whether every watcher gets the end, and what it costs the API (CPU, RSS) and the load generator.

    .venv/bin/python -m bench.fanout            # every scenario, 3 runs each (about 15 min)
    .venv/bin/python -m bench.fanout --help

Each run: submit the jobs (they wait in the Celery queue: no worker is running), connect every
watcher and wait for all their snapshots, then start one worker (concurrency 2) and follow the
jobs to the end. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
from array import array
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench import probe, report
from bench.stack import Stack, unwind_on_signals
from bench.watchers import Client, ClientReport, Plan, latencies

RESULTS = Path(__file__).resolve().parent / "results"
TERMINAL = ("succeeded", "failed", "cancelled")
WORKER_CONCURRENCY = 2
IDLE_MEASURE_SECONDS = 3.0
SETTLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Scenario:
    jobs: int
    watchers_per_job: int
    seconds: float
    steps: int
    progress_interval: float
    clients: int

    @property
    def sockets(self) -> int:
        return self.jobs * self.watchers_per_job

    @property
    def title(self) -> str:
        return (
            f"{self.jobs} job{'s' if self.jobs > 1 else ''} x {self.watchers_per_job} "
            f"watchers, progress {self.progress_interval:g}s"
        )

    @property
    def run_timeout(self) -> float:
        """Bound on one run once the watchers are ready: worker start plus the jobs, twice."""
        rounds = math.ceil(self.jobs / WORKER_CONCURRENCY)
        return 60 + 2 * rounds * (self.seconds + 2)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen = []
    for interval in args.intervals:
        for watchers in args.watchers:
            clients = 1 if watchers <= args.split_above else args.clients
            chosen.append(Scenario(1, watchers, args.seconds, args.steps, interval, clients))
        if args.many_jobs:
            jobs, per_job = args.many_jobs
            clients = 1 if jobs * per_job <= args.split_above else args.clients
            chosen.append(
                Scenario(jobs, per_job, args.many_seconds, args.many_steps, interval, clients)
            )
    return chosen


def submit(http: httpx.Client, scenario: Scenario) -> list[str]:
    ids = []
    for _ in range(scenario.jobs):
        params = {"seconds": scenario.seconds, "steps": scenario.steps}
        response = http.post("/jobs", json={"kind": "sleep", "params": params})
        response.raise_for_status()
        ids.append(str(response.json()["id"]))
    return ids


def statuses(http: httpx.Client, ids: list[str]) -> Counter[str]:
    return Counter(str(http.get(f"/jobs/{job_id}").json()["status"]) for job_id in ids)


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_once(
    stack: Stack, scenario: Scenario, number: int, console: Console, *, deflate: bool
) -> dict[str, Any]:
    pid, port, token = stack.api_pid, stack.port, stack.token()
    headers = {"Authorization": f"Bearer {token}"}
    leftover = probe.wait_for_sockets(pid, port, 0, SETTLE_TIMEOUT)
    rss_0 = probe.rss(pid)
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=10) as http:
        ids = submit(http, scenario)
    watched = [job_id for job_id in ids for _ in range(scenario.watchers_per_job)]
    clients = [
        Client(
            Plan(
                ws_url=stack.ws_url,
                token=token,
                job_ids=tuple(watched[index :: scenario.clients]),
                run_timeout=scenario.run_timeout,
                deflate=deflate,
            )
        )
        for index in range(scenario.clients)
    ]
    worker = None
    sampler = probe.Sampler(pid)
    try:
        for client in clients:
            client.start()
        ready = [client.receive(180) for client in clients]
        open_sockets = probe.established(pid, port)
        rss_open = probe.rss(pid)
        api_cpu_idle = probe.cpu_over(pid, IDLE_MEASURE_SECONDS)
        sampler.start()
        worker = stack.start_worker(f"bench-worker-{number}", scenario.progress_interval)
        reports: list[ClientReport] = [
            client.receive(scenario.run_timeout + 60)[1] for client in clients
        ]
    finally:
        sampler.stop()
        if worker is not None:
            worker.stop()
        for client in clients:
            client.stop()
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=10) as http:
        job_states = statuses(http, ids)
    remaining = probe.wait_for_sockets(pid, port, 0, SETTLE_TIMEOUT)
    rss_after = probe.rss(pid)

    watchers = [watcher for item in reports for watcher in item.watchers]
    values: array[float] = array("d")
    for item in reports:
        values.extend(latencies(item))
    ordered = sorted(values)
    starts = [w.first_live_at for w in watchers if w.first_live_at is not None]
    ends = [w.last_at for w in watchers if w.last_at is not None and w.live]
    window = (max(ends) - min(starts)) if starts and ends else None
    published: dict[str, int] = {}
    for w in watchers:
        if w.last_seq is not None and w.first_seq is not None:
            published[w.job_id] = max(published.get(w.job_id, 0), w.last_seq - w.first_seq)
    delivered = sum(w.live for w in watchers)
    expected = sum(published.values()) * scenario.watchers_per_job
    client_cpu = [item.live_cpu_percent for item in reports]
    closes = Counter(
        f"{w.close_code} {w.close_reason}".strip() if w.error is None else w.error for w in watchers
    )
    figures: dict[str, float | None] = {
        "delivered": delivered / window if window else None,
        "published": sum(published.values()) / window if window else None,
        "delivery_pct": 100.0 * delivered / expected if expected else None,
        "latency_p50": percentile(ordered, 0.50),
        "latency_p99": percentile(ordered, 0.99),
        "latency_max": ordered[-1] if ordered else None,
        "window": window,
        "terminal": sum(w.terminal for w in watchers),
        "increasing": sum(w.increasing for w in watchers),
        "missed": sum(w.missed for w in watchers),
        "resyncs": sum(max(0, w.snapshots - 1) for w in watchers),
        "abnormal": sum(w.error is not None or w.close_code != 1000 for w in watchers),
        "late": sum(w.snapshot_status != "queued" for w in watchers),
        "jobs_ok": job_states.get("succeeded", 0),
        "ready": max(message[2] for message in ready),
        "client_cpu": max((c for c in client_cpu if c is not None), default=None),
        "api_cpu": sampler.cpu_percent(min(starts), max(ends)) if window else None,
        "api_cpu_idle": api_cpu_idle,
        "machine_cpu": sampler.machine_percent(min(starts), max(ends)) if window else None,
        "rss_0": rss_0 / probe.MB,
        "rss_open": rss_open / probe.MB,
        "rss_peak": sampler.peak_rss() / probe.MB,
        "rss_after": rss_after / probe.MB,
    }
    details = {
        "scenario": scenario.title,
        "run": number,
        "figures": figures,
        "closes": dict(closes),
        "job_statuses": dict(job_states),
        "api_sockets_open": open_sockets,
        "api_sockets_before": leftover,
        "api_sockets_after": remaining,
        "client_cpu_each": client_cpu,
        "client_connect_cpu_seconds": [item.connect_cpu_seconds for item in reports],
        "after_terminal": sum(w.after_terminal for w in watchers),
        "timed_out": sum(item.timed_out for item in reports),
    }
    console.print(
        f"  run {number}: {delivered:,} msgs in {window or 0:.1f}s, "
        f"p50 {figures['latency_p50'] or 0:.1f} ms, p99 {figures['latency_p99'] or 0:.1f} ms, "
        f"terminal {figures['terminal']}/{scenario.sockets}, closes {dict(closes)}, "
        f"client CPU {client_cpu}, API CPU {figures['api_cpu'] or 0:.0f}%"
    )
    busiest = figures["client_cpu"]
    if busiest is not None and busiest > 80:
        console.print(f"  [red]a client process used {busiest:.0f}% of a core: try --clients 2")
    return details


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*$", re.MULTILINE)


def log_findings(log_path: Path) -> dict[str, Any]:
    """What in the API log a reader should look at: error counts and the exceptions seen."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    exceptions = Counter(line[:200] for line in EXCEPTION_LINE.findall(text))
    return {
        "ERROR lines": sum(line.startswith("ERROR") for line in text.splitlines()),
        "WARNING lines": sum(line.startswith("WARNING") for line in text.splitlines()),
        "Tracebacks": text.count("Traceback (most recent call last)"),
        "exceptions": dict(exceptions.most_common(10)),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--intervals",
        type=float,
        nargs="+",
        default=[0.25, 0.01],
        help="JOBQ_PROGRESS_INTERVAL of the worker, one pass each",
    )
    parser.add_argument(
        "--watchers",
        type=int,
        nargs="+",
        default=[1, 100, 1000],
        help="watchers of one job, one scenario each",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="the one job's sleep")
    parser.add_argument("--steps", type=int, default=1000, help="the one job's progress steps")
    parser.add_argument(
        "--many-jobs",
        type=int,
        nargs=2,
        default=[100, 10],
        metavar=("JOBS", "WATCHERS"),
        help="0 0 to skip",
    )
    parser.add_argument("--many-seconds", type=float, default=1.0)
    parser.add_argument("--many-steps", type=int, default=100)
    parser.add_argument(
        "--clients",
        type=int,
        default=2,
        help="client processes for scenarios above --split-above sockets",
    )
    parser.add_argument("--split-above", type=int, default=1000)
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument("--embedded", action="store_true", help="embedded servers even if local")
    parser.add_argument("--out", type=Path, default=RESULTS / "fanout.json")
    args = parser.parse_args(argv)
    if args.many_jobs == [0, 0]:
        args.many_jobs = None
    if args.runs < 1 or args.runs > 20:
        parser.error("--runs is 1..20")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    unwind_on_signals()
    console = Console(width=max(Console().width, 200))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = RESULTS / "logs" / stamp
    stack = Stack(log_dir, embedded=True if args.embedded else None)
    results: dict[str, dict[str, report.Figure]] = {}
    machine: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    try:
        stack.start()
        machine = {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "api_rss_fresh_mb": probe.rss(stack.api_pid) / probe.MB,
        }
        console.print(
            f"jobq fan-out bench: {stack.where}; API pid {stack.api_pid}; logs {log_dir}; {machine}"
        )
        number = 0
        for scenario in scenarios(args):
            console.print(f"[bold]{scenario.title}[/bold] ({scenario.clients} client process(es))")
            details = []
            for _ in range(args.runs):
                number += 1
                details.append(
                    run_once(stack, scenario, number, console, deflate=not args.no_deflate)
                )
            runs.extend(details)
            results[scenario.title] = report.aggregate(
                scenario.title,
                scenario.sockets,
                scenario.jobs,
                [item["figures"] for item in details],
            )
    finally:
        api_log = stack.api.log_path if stack.api is not None else None
        with contextlib.suppress(Exception):
            stack.stop()
    report.print_tables(console, results)
    report.write_json(args.out, results)
    findings = log_findings(api_log) if api_log else {}
    meta = {
        "started": stamp,
        "servers": stack.where,
        "machine": machine,
        "api_log": str(api_log),
        "api_log_counts": findings,
        "args": {key: str(value) for key, value in vars(args).items()},
        "runs": runs,
    }
    args.out.with_name(args.out.stem + "-runs.json").write_text(
        json.dumps(meta, indent=2, default=lambda o: asdict(o)) + "\n"
    )
    console.print(f"API log {api_log}: {findings}")
    console.print(f"wrote {args.out} and {args.out.with_name(args.out.stem + '-runs.json')}")


if __name__ == "__main__":
    main()
