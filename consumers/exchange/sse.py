"""An incremental Server-Sent Events parser (WHATWG rules) over raw byte chunks.

Works on bytes and only decodes complete lines, so a multi-byte UTF-8 character split across two
reads is never mangled; accepts LF, CRLF and CR line ends; ignores comment lines (keep-alives).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    index: int  # position of the chunk (0-based) whose bytes completed this event


@dataclass(slots=True)
class SseParser:
    max_event_bytes: int = 16 * 1024 * 1024
    _buffer: bytes = b""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _data_bytes: int = 0
    oversized: int = 0

    def feed(self, chunk: bytes, index: int = 0) -> list[SseEvent]:
        events: list[SseEvent] = []
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" not in buffer:
            # LF line ends only (every provider we proxy): one split instead of two scans a
            # line, and the two lines every event has (a data line, a blank line) handled
            # inline; anything else goes through _line as in the general case below.
            lines = buffer.split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                if not line:
                    if self._data:
                        events.append(
                            SseEvent(self._event or "message", "\n".join(self._data), index)
                        )
                        self._data = []
                    self._event = ""
                    self._data_bytes = 0
                elif line.startswith(b"data: "):
                    self._data_bytes += len(line)
                    if self._data_bytes > self.max_event_bytes:
                        self.oversized += 1
                    else:
                        self._data.append(line[6:].decode("utf-8", "replace"))
                else:
                    self._line(line, index, events)
            return events
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start)
            if lf == -1 and cr == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                if cr + 1 == length:
                    break  # a CR at the end may be the first half of CRLF: wait for more
                end, next_start = cr, cr + (2 if buffer[cr + 1 : cr + 2] == b"\n" else 1)
            else:
                end, next_start = lf, lf + 1
            self._line(buffer[start:end], index, events)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def finish(self, index: int = 0) -> list[SseEvent]:
        """Flush a final event the stream did not terminate with a blank line."""
        events: list[SseEvent] = []
        if self._buffer:
            self._line(self._buffer, index, events)
            self._buffer = b""
        self._dispatch(index, events)
        return events

    def _line(self, raw: bytes, index: int, events: list[SseEvent]) -> None:
        if not raw:
            self._dispatch(index, events)
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", "replace")
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_bytes += len(raw)
            if self._data_bytes > self.max_event_bytes:
                self.oversized += 1
                return
            self._data.append(value)
        elif name == "event":
            self._event = value

    def _dispatch(self, index: int, events: list[SseEvent]) -> None:
        if self._data:
            events.append(SseEvent(self._event or "message", "\n".join(self._data), index))
        self._event = ""
        self._data = []
        self._data_bytes = 0


def data_events(reads: Sequence[bytes], max_event_bytes: int) -> list[tuple[str, int]] | None:
    """The events of a whole stream in the shape every provider we proxy sends (``data: …``
    lines, each followed by a blank line, LF line ends, nothing after the last event), as
    (data, index of the read that completed it): what ``SseParser`` gives, without a call and
    an ``SseEvent`` per event. ``None`` for any other shape: the caller then uses ``SseParser``.
    """
    joined = b"".join(reads)
    if b"\r" in joined or len(joined) > max_event_bytes:
        return None
    blocks = joined.split(b"\n\n")
    if blocks.pop():  # bytes after the last blank line: a cut stream, SseParser.finish's case
        return None
    if not blocks:
        return []
    # Every block one "data: " line, checked over the whole stream at once: no LF but the two
    # after each block (so no comments, event names, multi-line data), and "data: " at the
    # start and after each blank line (so no extra blank lines either).
    count = len(blocks)
    if (
        joined.count(b"\n") != 2 * count
        or not joined.startswith(b"data: ")
        or joined.count(b"\n\ndata: ") != count - 1
    ):
        return None
    texts = [block[6:].decode("utf-8", "replace") for block in blocks]
    # The parser dispatches an event when it reads the blank line's LF, i.e. in the read that
    # holds the second LF after the event's data. Usually each read is one whole event: then
    # every read ends with a blank line, and event i completes in read i.
    if len(reads) == count and all(read.endswith(b"\n\n") for read in reads):
        return list(zip(texts, range(count), strict=True))
    ends = list(itertools.accumulate(map(len, reads)))
    events: list[tuple[str, int]] = []
    read = 0
    position = -1
    for block, text in zip(blocks, texts, strict=True):
        position += len(block) + 2
        while ends[read] <= position:
            read += 1
        events.append((text, read))
    return events
