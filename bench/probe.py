"""Watching a process from outside: CPU, RSS and open sockets, sampled with psutil."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    cpu: float  # the process's user + system seconds
    rss: int  # bytes
    machine_busy: float  # every core's non-idle seconds, summed
    machine_total: float  # every core's seconds, summed


def sample(process: psutil.Process) -> Sample:
    times = process.cpu_times()
    machine = psutil.cpu_times()
    total = float(sum(machine))
    idle = float(machine.idle + getattr(machine, "iowait", 0.0))
    return Sample(
        at=time.time(),
        cpu=float(times.user + times.system),
        rss=int(process.memory_info().rss),
        machine_busy=total - idle,
        machine_total=total,
    )


@dataclass
class Sampler:
    """Samples one process every `interval` seconds in a thread, until stopped."""

    pid: int
    interval: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        process = psutil.Process(self.pid)
        self.samples.append(sample(process))

        def loop() -> None:
            # Bounded by the stop event; the thread is a daemon in case the caller dies.
            while not self._stop.wait(self.interval):
                try:
                    self.samples.append(sample(process))
                except psutil.Error:
                    return

        self._thread = threading.Thread(target=loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(psutil.Error):
            self.samples.append(sample(psutil.Process(self.pid)))

    def _between(self, start: float, end: float) -> tuple[Sample, Sample] | None:
        """The last sample at or before `start` and the first at or after `end`."""
        before = [s for s in self.samples if s.at <= start] or self.samples[:1]
        after = [s for s in self.samples if s.at >= end] or self.samples[-1:]
        if not before or not after or after[0].at <= before[-1].at:
            return None
        return before[-1], after[0]

    def cpu_percent(self, start: float, end: float) -> float | None:
        """The process's CPU over [start, end], in % of one core."""
        pair = self._between(start, end)
        if pair is None:
            return None
        first, last = pair
        return 100.0 * (last.cpu - first.cpu) / (last.at - first.at)

    def machine_percent(self, start: float, end: float) -> float | None:
        """How busy the whole machine was over [start, end], in % of all its cores."""
        pair = self._between(start, end)
        if pair is None:
            return None
        first, last = pair
        total = last.machine_total - first.machine_total
        return 100.0 * (last.machine_busy - first.machine_busy) / total if total > 0 else None

    def peak_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def established(pid: int, port: int) -> int:
    """TCP connections the process holds open on its listening port."""
    return sum(
        1
        for connection in psutil.Process(pid).net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED
        and connection.laddr
        and connection.laddr.port == port
    )


def wait_for_sockets(pid: int, port: int, at_most: int, timeout: float) -> int:
    """Wait (bounded) until the process holds at most `at_most` connections; returns the count."""
    deadline = time.monotonic() + timeout
    while True:
        count = established(pid, port)
        if count <= at_most or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def cpu_over(pid: int, seconds: float) -> float:
    """The process's CPU over the next `seconds`, in % of one core."""
    process = psutil.Process(pid)
    first = sample(process)
    time.sleep(seconds)
    last = sample(process)
    return 100.0 * (last.cpu - first.cpu) / (last.at - first.at)


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (uvicorn --workers, Celery's pool)."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of the process and its living descendants."""
    total = 0.0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def tree_rss(pid: int) -> int:
    """RSS of the process and its descendants, summed (bytes; shared pages count per process)."""
    total = 0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += int(process.memory_info().rss)
    return total


class TreePeak:
    """The highest tree_rss of a process tree, sampled every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
