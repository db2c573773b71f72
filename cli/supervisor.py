"""Child processes that are restarted when they die and stopped in order.

Each child runs in its own process group, so a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children one by one (and anything they spawned).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

STOP_TIMEOUT = 10.0
LEFTOVER_TIMEOUT = 2.0
RESTART_WINDOW = 60.0
MAX_RESTARTS = 5  # within RESTART_WINDOW; beyond that the child is given up on
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0

Notify = Callable[[str], None]


class GaveUp(Exception):
    """A child kept dying: more than MAX_RESTARTS restarts within RESTART_WINDOW."""


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, SIGTERM it if the supervisor itself dies."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None
    restarts: deque[float] = field(default_factory=deque)

    def start(self) -> None:
        self.restart_at = None
        self.process = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def reap(self) -> tuple[int, int] | None:
        """(pid, exit code) if the process has died, after clearing out its group.

        The exit code is negative when a signal killed it.
        """
        if self.process is None or self.process.poll() is None:
            return None
        process, self.process = self.process, None
        clear_group(process.pid)
        return process.pid, process.returncode

    def schedule_restart(self, now: float) -> float:
        """Records a restart and returns its back-off; raises GaveUp past the limit."""
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) >= MAX_RESTARTS:
            raise GaveUp(f"{self.name} died {len(self.restarts) + 1} times within a minute")
        backoff = min(BACKOFF_BASE * (1 << len(self.restarts)), BACKOFF_MAX)
        self.restarts.append(now)
        self.restart_at = now + backoff
        return backoff

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; then clears out whatever it left in its group."""
        process, self.process = self.process, None
        self.restart_at = None
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        clear_group(process.pid)
        return process.returncode


def _signal_group(pgid: int, signum: int) -> bool:
    """False when no process is left in the group."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was reused by someone else's process
        return False
    return True


def clear_group(pgid: int) -> None:
    """Ends what a dead group leader left behind (for instance Celery's pool processes)."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + LEFTOVER_TIMEOUT
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


@dataclass
class Supervisor:
    """Starts children in order, restarts the ones that die, stops them in `stop_order`."""

    children: list[Child]
    stop_order: list[str]
    notify: Notify = print
    # How long a child gets to stop after SIGTERM before SIGKILL: its jobs' shutdown grace.
    stop_timeout: float = STOP_TIMEOUT

    def start(self) -> None:
        for child in self.children:
            self.notify(f"starting {child.name}: {' '.join(child.argv[1:])}")
            child.start()

    def check(self) -> None:
        """One supervision pass: notice deaths, start due restarts. Raises GaveUp."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.notify(f"restarting {child.name}")
                    child.start()
                continue
            died = child.reap()
            if died is None:
                continue
            pid, code = died
            self.notify(f"{child.name} (pid {pid}) exited unexpectedly: {_describe(code)}")
            backoff = child.schedule_restart(now)
            self.notify(f"restarting {child.name} in {backoff:.1f}s")

    def stop(self) -> None:
        ordered = sorted(self.children, key=lambda c: _position(self.stop_order, c.name))
        for child in ordered:
            if child.reap() is not None or child.pid is None:
                child.restart_at = None
                continue
            self.notify(f"stopping {child.name} (pid {child.pid})")
            code = child.stop(self.stop_timeout)
            if code in (0, -signal.SIGTERM):  # uvicorn re-raises the SIGTERM it handled
                self.notify(f"{child.name} stopped")
            elif code == -signal.SIGKILL:
                self.notify(f"{child.name} did not stop within {self.stop_timeout:.0f}s: killed")
            else:
                self.notify(f"{child.name} stopped: {_describe(code)}")


def _position(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _describe(code: int | None) -> str:
    if code is None:
        return "not running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
