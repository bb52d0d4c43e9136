"""The embedded directory's lock is detected before the engine is opened."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consumers.export.source import ExportError, check_available, holder_of


def test_a_directory_nobody_holds_is_available(tmp_path: Path) -> None:
    assert holder_of(tmp_path) is None
    (tmp_path / "status").write_text("PID: 1\n")
    assert holder_of(tmp_path) is None  # a stale status file left by a crash holds nothing
    check_available(f"chdb://{tmp_path}")
    check_available("http://example.invalid:8123")  # servers are never checked for a lock


def test_a_held_directory_names_its_holder_and_what_to_do(tmp_path: Path) -> None:
    status = tmp_path / "status"
    holder = subprocess.Popen(  # a stand-in for the loader: ClickHouse's own flock on `status`
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; f = open(sys.argv[1], 'w'); f.write(f'PID: {os.getpid()}\\n');"
            "f.flush(); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(status),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert holder_of(tmp_path) == f"pid {holder.pid}"
        with pytest.raises(ExportError) as refused:
            check_available(f"chdb://{tmp_path}")
        message = str(refused.value)
        assert f"the loader holds {tmp_path}" in message
        assert "point --clickhouse at a ClickHouse server" in message
    finally:
        holder.communicate("", timeout=10)
    assert holder_of(tmp_path) is None


def test_this_process_holding_the_engine_is_not_a_conflict(tmp_path: Path) -> None:
    with (tmp_path / "status").open("w") as f:
        f.write(f"PID: {os.getpid()}\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)
        assert holder_of(tmp_path) is None
