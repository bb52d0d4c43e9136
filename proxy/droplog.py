"""The drop log: which exchanges lost events at the journal's cap (or on a failing disk).

Dropping is the proxy's last resort and is counted; this file says *which* exchanges it hit, so an
operator can tell clients or reconcile. One line per exchange, the first time one of its events is
dropped::

    2026-12-02T10:15:03.123456Z 01938f7e-8a5c-7b2e-9c4d-3f1a2b3c4d5e journal_full

(UTC time, request id, reason: ``journal_full``, ``journal_io_error`` or ``encode_error``). The
file is ``dropped.log`` in the proxy's journal directory, created private (0600). It is capped: when
it reaches half of ``max_bytes`` it is renamed to ``dropped.1.log`` (replacing the older one) and a
new one starts, so the two hold at most ``max_bytes`` and always the newest ids. Writes are plain
appends without fsync (a few per outage second at most, never on a healthy proxy's hot path).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "dropped.log"
ROTATED_NAME = "dropped.1.log"
# Exchanges remembered as dropped, so each is logged once and its later events are dropped too.
_REMEMBERED_MAX = 10_000


class DropLog:
    def __init__(self, directory: Path, *, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.path = directory / FILE_NAME
        self.exchanges = 0  # distinct exchanges logged by this process
        self._max_half = max(max_bytes // 2, 1)
        # Exchanges named recently, oldest first: the publisher checks it on every event.
        self.recent: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._fd: int | None = None
        self._size = 0

    def __contains__(self, key: bytes) -> bool:
        """Whether an event of this exchange was dropped recently (cheap: one dict lookup)."""
        return key in self.recent

    def __bool__(self) -> bool:
        return bool(self.recent)

    def record(self, key: bytes, reason: str) -> None:
        """Name the exchange ``key`` once; never raises (a failing disk is why we are here)."""
        if key in self.recent:
            return
        self.recent[key] = None
        if len(self.recent) > _REMEMBERED_MAX:
            self.recent.popitem(last=False)
        self.exchanges += 1
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        line = f"{now} {key.decode(errors='replace')} {reason}\n".encode()
        try:
            self._write(line)
        except OSError as exc:
            if self.exchanges == 1 or self.exchanges % 10_000 == 0:
                log.error("cannot write the drop log %s: %s", self.path, exc)

    def _write(self, line: bytes) -> None:
        if self._fd is not None and self._size + len(line) > self._max_half:
            os.close(self._fd)
            self._fd = None
            os.replace(self.path, self.path.with_name(ROTATED_NAME))
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        os.write(self._fd, line)
        self._size += len(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_dropped(directory: Path) -> list[str]:
    """The request ids named in a journal directory's drop log, oldest first (operators, tests)."""
    ids: list[str] = []
    for name in (ROTATED_NAME, FILE_NAME):
        try:
            text = (directory / name).read_text(errors="replace")
        except FileNotFoundError:
            continue
        rows = (line.split() for line in text.splitlines())
        ids += [parts[1] for parts in rows if len(parts) > 1]
    return ids
