"""The health of a `logorhythms up` stack: the status file its supervisor keeps, and reading it.

The supervisor rewrites ``<data dir>/status.json`` (mode 0600, replaced atomically) whenever a
service changes state and every few seconds otherwise; `logorhythms status` reads it, checks
that the supervisor is still alive and that each port still accepts connections.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
# Older than this while the supervisor lives: it is stuck (it rewrites the file every 2 s).
STALE_AFTER_S = 15.0


@dataclass(slots=True)
class ServiceStatus:
    name: str
    state: str = "starting"  # starting | up | restarting | down | stopped
    pid: int | None = None
    restarts: int = 0
    ports: list[int] = field(default_factory=list)
    log: str = ""
    last_exit: str | None = None  # "exit code 1", "signal SIGKILL", "hung (killed)"
    since: float = field(default_factory=time.time)  # wall clock of the last state change


def write_status(
    path: Path, services: Sequence[ServiceStatus], *, supervisor_pid: int, stopping: bool
) -> None:
    document = {
        "supervisor_pid": supervisor_pid,
        "updated_at": time.time(),
        "stopping": stopping,
        "services": [asdict(s) for s in services],
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=1)
    os.replace(partial, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render_status(data_dir: Path) -> tuple[int, str]:
    """Exit status and the text `logorhythms status` prints: 0 all up, 1 degraded, 3 not
    running."""
    path = data_dir / STATUS_FILE
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 3, f"not running: no {path} (start the stack with `logorhythms up`)"
    except (OSError, ValueError) as exc:
        return 3, f"cannot read {path}: {exc}"
    supervisor = int(document.get("supervisor_pid") or 0)
    if not supervisor or not _alive(supervisor):
        return 3, f"not running: the supervisor (pid {supervisor}) is gone; last status in {path}"
    now = time.time()
    lines = [f"logorhythms up (pid {supervisor}), data in {data_dir}"]
    age = now - float(document.get("updated_at") or 0)
    healthy = age <= STALE_AFTER_S and not document.get("stopping")
    if document.get("stopping"):
        lines.append("  stopping")
    if age > STALE_AFTER_S:
        lines.append(f"  the supervisor has not updated its status for {_ago(age)}: it is stuck")
    header = f"  {'SERVICE':<18}{'STATE':<12}{'PID':<9}{'RESTARTS':<10}{'PORTS':<18}LAST EXIT"
    lines.append(header)
    for raw in document.get("services", []):
        service = ServiceStatus(**raw)
        state = service.state
        ports = []
        for port in service.ports:
            listening = _listening(port)
            ports.append(f"{port}" if listening else f"{port}(closed)")
            if not listening and state == "up":
                state = "unreachable"
        if state != "up":
            healthy = False
        pid = str(service.pid) if service.pid else "-"
        exit_text = service.last_exit or "-"
        lines.append(
            f"  {service.name:<18}{state:<12}{pid:<9}{service.restarts:<10}"
            f"{','.join(ports) or '-':<18}{exit_text}  ({state} for {_ago(now - service.since)})"
        )
    lines.append(f"  logs: {data_dir / 'logs'}")
    return (0 if healthy else 1), "\n".join(lines)
