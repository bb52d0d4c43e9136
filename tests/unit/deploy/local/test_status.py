"""`logorhythms status`: read from the supervisor's status file."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from deploy.local.status import ServiceStatus, render_status, write_status


def test_all_up_and_listening_is_healthy(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        services = [ServiceStatus("proxy", state="up", pid=os.getpid(), ports=[port])]
        write_status(tmp_path / "status.json", services, supervisor_pid=os.getpid(), stopping=False)
        code, text = render_status(tmp_path)
    assert code == 0, text
    assert "proxy" in text
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o600


def test_a_restarting_part_is_degraded(tmp_path: Path) -> None:
    services = [ServiceStatus("loader", state="restarting", restarts=2, last_exit="signal SIGKILL")]
    write_status(tmp_path / "status.json", services, supervisor_pid=os.getpid(), stopping=False)
    code, text = render_status(tmp_path)
    assert code == 1
    assert "restarting" in text
    assert "signal SIGKILL" in text


def test_an_up_part_whose_port_is_closed_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    services = [ServiceStatus("proxy", state="up", pid=os.getpid(), ports=[port])]
    write_status(tmp_path / "status.json", services, supervisor_pid=os.getpid(), stopping=False)
    code, text = render_status(tmp_path)
    assert code == 1
    assert "unreachable" in text


def test_no_supervisor_means_not_running(tmp_path: Path) -> None:
    assert render_status(tmp_path)[0] == 3
    write_status(tmp_path / "status.json", [], supervisor_pid=2**22 + 7, stopping=False)
    code, text = render_status(tmp_path)
    assert code == 3
    assert "gone" in text
