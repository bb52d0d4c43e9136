"""One Python service of `logorhythms up` (``python -m deploy.cli <command>``) and its restarts.

Each child runs in its own session (a terminal's Ctrl-C reaches only the supervisor, which
keeps the stop order), logs to its own file, and is "up" once every port it names accepts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.local.status import ServiceStatus
from deploy.local.supervision import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    STABLE_AFTER_S,
    how_it_ended,
    say,
)

__all__ = ["ServiceProcess", "StartError"]


class StartError(Exception):
    """A service did not come up at the first start; the message says which and why."""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class ServiceProcess:
    """One Python service (`python -m deploy.cli <command>`) and its restarts."""

    command: list[str]
    env: dict[str, str]
    status: ServiceStatus
    log_path: Path
    stop_timeout_s: float
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = BACKOFF_FIRST_S
    restart_at: float | None = None

    @property
    def name(self) -> str:
        return self.status.name

    def spawn(self) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", *self.command],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None
        self._set("starting", pid=self.process.pid)

    def ready(self) -> bool:
        return all(_accepts(port) for port in self.status.ports)

    def _set(self, state: str, *, pid: int | None = None) -> None:
        if state != self.status.state:
            self.status.since = time.time()
        self.status.state = state
        self.status.pid = pid

    def watch(self, now: float) -> bool:
        """One supervision step; True when the state changed."""
        if self.restart_at is not None:
            if now < self.restart_at:
                return False
            self.status.restarts += 1
            self.spawn()
            return True
        if self.process is None:
            return False
        returncode = self.process.poll()
        if returncode is not None:
            if now - self.started_at >= STABLE_AFTER_S:
                self.backoff_s = BACKOFF_FIRST_S
            self.status.last_exit = how_it_ended(returncode)
            self.restart_at = now + self.backoff_s
            say(
                f"{self.name} (pid {self.process.pid}) ended with {self.status.last_exit}; "
                f"restarting in {self.backoff_s:.1f}s (restart #{self.status.restarts + 1}; "
                f"its log: {self.log_path})"
            )
            self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
            self._set("restarting")
            return True
        if self.status.state == "starting" and self.ready():
            self._set("up", pid=self.process.pid)
            if self.status.restarts:
                say(f"{self.name} is back (pid {self.process.pid})")
            return True
        return False

    def wait_ready(self, timeout_s: float, stopping: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout_s
        while not stopping():
            assert self.process is not None
            if self.process.poll() is not None:
                raise StartError(
                    f"{self.name} ended with {how_it_ended(self.process.returncode)} while "
                    f"starting; the end of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.ready():
                self._set("up", pid=self.process.pid)
                return
            if time.monotonic() > deadline:
                raise StartError(
                    f"{self.name} did not listen on {self.status.ports} within {timeout_s:.0f}s; "
                    f"the end of {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self.restart_at = None
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {self.stop_timeout_s:.0f}s; killing it")
                process.kill()
                process.wait()
        self._set("stopped")
