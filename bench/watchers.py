"""The load generator: one process holding many WebSocket watchers, each following one job.

It runs in a child process of its own (`Client`), so its CPU can be told apart from the API's.
The parent learns through a pipe when every watcher has its snapshot ("ready"), and gets a
`ClientReport` when every watcher has ended (or the run timed out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Plan:
    ws_url: str  # ws://127.0.0.1:PORT
    token: str
    job_ids: tuple[str, ...]  # one per watcher
    connect_concurrency: int = 50
    connect_timeout: float = 60.0
    run_timeout: float = 300.0
    deflate: bool = True  # offer permessage-deflate, as browsers and `websockets` do


@dataclass
class Watcher:
    """What one socket saw. Times are `time.time()` (same clock as the events' `ts`)."""

    job_id: str
    connected: bool = False
    error: str | None = None
    snapshot_status: str | None = None  # status in the first snapshot ("queued" = early enough)
    snapshots: int = 0  # more than one: the server re-sent a snapshot (a resync)
    live: int = 0  # messages other than snapshots
    first_seq: int | None = None
    last_seq: int | None = None
    increasing: bool = True  # every message had a higher seq than the one before
    missed: int = 0  # seqs skipped between consecutive non-snapshot messages
    terminal: bool = False  # got a terminal `status` event
    after_terminal: int = 0  # messages after the terminal event (should be none)
    close_code: int | None = None
    close_reason: str = ""
    first_live_at: float | None = None
    last_at: float | None = None

    def take(self, event: dict[str, Any], now: float, latencies: array[float]) -> None:
        seq = int(event["seq"])
        if self.terminal:
            self.after_terminal += 1
        if self.last_seq is not None and seq <= self.last_seq:
            self.increasing = False
        if event["type"] == "snapshot":
            self.snapshots += 1
            if self.snapshot_status is None:
                self.snapshot_status = event["status"]
        else:
            if self.last_seq is not None and seq > self.last_seq + 1:
                self.missed += seq - self.last_seq - 1
            self.live += 1
            if self.first_live_at is None:
                self.first_live_at = now
            latencies.append((now - datetime.fromisoformat(event["ts"]).timestamp()) * 1000)
            if event["type"] == "status" and event["status"] in TERMINAL:
                self.terminal = True
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = max(seq, self.last_seq or seq)
        self.last_at = now


@dataclass
class ClientReport:
    pid: int
    watchers: list[Watcher]
    latencies_ms: bytes  # array("d"), one per non-snapshot message
    ready_seconds: float  # start until every watcher had its snapshot (or failed)
    connect_cpu_seconds: float
    live_started_at: float | None  # first non-snapshot message, any watcher
    live_ended_at: float | None  # last message, any watcher
    live_cpu_seconds: float  # this process's CPU between those two moments (about)
    timed_out: int = 0

    @property
    def live_cpu_percent(self) -> float | None:
        if self.live_started_at is None or self.live_ended_at is None:
            return None
        wall = self.live_ended_at - self.live_started_at
        return 100.0 * self.live_cpu_seconds / wall if wall > 0 else None


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class _Run:
    plan: Plan
    process: psutil.Process = field(default_factory=psutil.Process)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    pending_ready: int = 0
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    live_started_at: float | None = None
    live_cpu_start: float = 0.0

    def ready(self) -> None:
        self.pending_ready -= 1
        if self.pending_ready <= 0:
            self.all_ready.set()

    async def follow(self, watcher: Watcher, gate: asyncio.Semaphore) -> None:
        plan = self.plan
        url = f"{plan.ws_url}/ws/jobs/{watcher.job_id}"
        headers = {"Authorization": f"Bearer {plan.token}"}
        signalled = False
        try:
            async with gate:
                ws = await connect(
                    url,
                    additional_headers=headers,
                    open_timeout=plan.connect_timeout,
                    compression="deflate" if plan.deflate else None,
                    ping_interval=None,
                )
            watcher.connected = True
            async with ws:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        now = time.time()
                        event = json.loads(raw)
                        if self.live_started_at is None and event["type"] != "snapshot":
                            self.live_started_at = now
                            self.live_cpu_start = _cpu(self.process)
                        watcher.take(event, now, self.latencies)
                        if not signalled:
                            signalled = True
                            self.ready()
            watcher.close_code = ws.close_code
            watcher.close_reason = ws.close_reason or ""
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            watcher.error = f"{type(exc).__name__}: {exc}"
        finally:
            if not signalled:
                self.ready()


async def _run(plan: Plan, send: Callable[[object], None]) -> ClientReport:
    state = _Run(plan)
    state.pending_ready = len(plan.job_ids)
    watchers = [Watcher(job_id) for job_id in plan.job_ids]
    gate = asyncio.Semaphore(plan.connect_concurrency)
    started, cpu_started = time.monotonic(), _cpu(state.process)
    tasks = [asyncio.create_task(state.follow(watcher, gate)) for watcher in watchers]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.all_ready.wait(), plan.connect_timeout * 2)
    ready_seconds = time.monotonic() - started
    connect_cpu = _cpu(state.process) - cpu_started
    send(("ready", sum(w.connected and w.snapshots > 0 for w in watchers), ready_seconds))
    _, pending = await asyncio.wait(tasks, timeout=plan.run_timeout)
    cpu_ended = _cpu(state.process)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for watcher, task in zip(watchers, tasks, strict=True):
        if task in pending and watcher.error is None:
            watcher.error = "run timed out"
    ends = [w.last_at for w in watchers if w.last_at is not None]
    return ClientReport(
        pid=state.process.pid,
        watchers=watchers,
        latencies_ms=state.latencies.tobytes(),
        ready_seconds=ready_seconds,
        connect_cpu_seconds=connect_cpu,
        live_started_at=state.live_started_at,
        live_ended_at=max(ends) if ends and state.live_started_at is not None else None,
        live_cpu_seconds=cpu_ended - state.live_cpu_start if state.live_started_at else 0.0,
        timed_out=len(pending),
    )


def client_main(plan: Plan, conn: Connection) -> None:
    """Entry point of a client process."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        report = asyncio.run(_run(plan, conn.send))
        conn.send(("done", report))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        conn.close()


@dataclass
class Client:
    """A client process and the parent's end of its pipe."""

    plan: Plan
    process: multiprocessing.process.BaseProcess | None = None
    conn: Connection | None = None

    def start(self) -> Client:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        self.process = context.Process(target=client_main, args=(self.plan, child), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.pid is not None
        return self.process.pid

    def receive(self, timeout: float) -> tuple[Any, ...]:
        assert self.conn is not None
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client {self.pid} sent nothing for {timeout:.0f}s")
        message: tuple[Any, ...] = self.conn.recv()
        if message[0] == "error":
            raise RuntimeError(f"client {self.pid} failed: {message[1]}")
        return message

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = None


def latencies(report: ClientReport) -> array[float]:
    values = array("d")
    values.frombytes(report.latencies_ms)
    return values
