"""The drop log: each dropped exchange named once, privately, within its cap."""

from __future__ import annotations

import stat
from pathlib import Path

from proxy.droplog import FILE_NAME, ROTATED_NAME, DropLog, read_dropped


def test_each_exchange_is_named_once_in_a_private_file(tmp_path: Path) -> None:
    log = DropLog(tmp_path)
    assert not log
    for key in (b"a", b"b", b"a", b"c", b"b"):
        log.record(key, "journal_full")
    log.close()
    assert read_dropped(tmp_path) == ["a", "b", "c"]
    assert log.exchanges == 3
    assert b"a" in log
    assert b"z" not in log
    assert stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode) == 0o600
    fields = (tmp_path / FILE_NAME).read_text().splitlines()[0].split()
    assert fields[1:] == ["a", "journal_full"]
    assert fields[0].endswith("Z")


def test_the_log_is_capped_and_keeps_the_newest_ids(tmp_path: Path) -> None:
    log = DropLog(tmp_path, max_bytes=4096)
    keys = [f"{i:036d}".encode() for i in range(200)]  # ~80 bytes a line: ~16 KB written
    for key in keys:
        log.record(key, "journal_full")
    log.close()
    size = (tmp_path / FILE_NAME).stat().st_size + (tmp_path / ROTATED_NAME).stat().st_size
    assert size <= 4096
    named = read_dropped(tmp_path)
    assert named == [k.decode() for k in keys[-len(named) :]]
    assert log.exchanges == 200
