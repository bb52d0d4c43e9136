"""A one-line progress bar on a terminal: rows (or files), bytes, rates and ETA. Silent when not
a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_S = 0.2


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """``advance(rows, bytes)`` as work is done; ``total`` rows, when known, gives the ETA.
    ``unit`` names what is counted ("rows", or "files" for an upload)."""

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "rows",
        out: TextIO | None = None,
    ) -> None:
        self.out = out if out is not None else sys.stderr
        self.enabled = self.out.isatty()
        self.label = label
        self.total = total
        self.unit = unit
        self.rows = 0
        self.bytes = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def advance(self, rows: int, size: int = 0) -> None:
        self.rows += rows
        self.bytes += size
        now = time.monotonic()
        if self.enabled and now - self._drawn >= REDRAW_S:
            self._drawn = now
            self.out.write("\r" + self.line(now) + "\x1b[K")
            self.out.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        rate = self.rows / elapsed
        done = f"{self.rows:,}"
        eta = ""
        if self.total:
            done += f"/{self.total:,} ({100 * self.rows / self.total:.0f}%)"
            if rate > 0:
                eta = f" ETA {_duration(max(self.total - self.rows, 0) / rate)}"
        return (
            f"{self.label}: {done} {self.unit}, {_size(self.bytes)} "
            f"({_size(self.bytes / elapsed)}/s), {rate:,.0f} {self.unit}/s, "
            f"{_duration(elapsed)} elapsed{eta}"
        )

    def close(self) -> None:
        if self.enabled:
            self.out.write("\r" + self.line() + "\x1b[K\n")
            self.out.flush()
