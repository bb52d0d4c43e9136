"""Reading a journal directory another process writes: the producer process's view of it.

The proxy appends records to its segments (proxy/journal.py) and deletes the ones Kafka holds
whole; this reader follows them from a position onwards, oldest first, and never writes. A record
cut short at the end of the newest segment is not written whole yet and is read again later; one
cut short in an older segment (the proxy moved on to a newer one, or was killed mid-write) is
damage, and the rest of that segment is skipped, as the proxy's own replay does.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from proxy.journal import Position, segment_paths
from proxy.journal_record import MAX_RECORD_BYTES, RECORD_HEADER, JournalRecord, decode_payload

log = logging.getLogger(__name__)

_BLOCK_BYTES = 256 * 1024  # one read: a few hundred small events


class JournalTail:
    def __init__(self, directory: Path, start: Position) -> None:
        self.directory = directory
        self._at = start
        self._file: tuple[int, BinaryIO] | None = None
        self.skipped_bytes = 0  # damage skipped, for the log and tests

    @property
    def position(self) -> Position:
        return self._at

    def seek(self, position: Position) -> None:
        """Read from ``position`` again (after a failed send: nothing is skipped)."""
        self._close()
        self._at = position

    def close(self) -> None:
        self._close()

    def read(self, max_records: int, max_bytes: int) -> list[tuple[Position, JournalRecord]]:
        """The next whole records, at most ``max_records`` and about ``max_bytes`` of values."""
        out: list[tuple[Position, JournalRecord]] = []
        read_bytes = 0
        while len(out) < max_records and read_bytes < max_bytes:
            got = self._read_block(max_records - len(out), max_bytes - read_bytes)
            if not got:
                break
            out += got
            read_bytes += sum(len(record.value) for _, record in got)
        return out

    def _segments(self) -> list[int]:
        ids = []
        for path in segment_paths(self.directory):
            with contextlib.suppress(ValueError):
                ids.append(int(path.stem))
        return ids

    def _open(self) -> BinaryIO | None:
        """The file of the segment the position is in (or the next one that exists)."""
        if self._file is not None and self._file[0] == self._at.segment:
            return self._file[1]
        self._close()
        later = [i for i in self._segments() if i >= self._at.segment]
        if not later:
            return None
        if later[0] != self._at.segment:
            self._at = Position(later[0], 0)
        try:
            file = (self.directory / f"{self._at.segment:020d}.seg").open("rb")
        except FileNotFoundError:  # deleted by the proxy since the listing: acknowledged whole
            return None
        file.seek(self._at.offset)
        self._file = (self._at.segment, file)
        return file

    def _read_block(self, max_records: int, max_bytes: int) -> list[tuple[Position, JournalRecord]]:
        """The whole records in one read of the file (a block, or one record larger than it).

        One ``read`` and a parse over bytes in memory, not two reads per record: the tail reads
        every event the proxy publishes, so this is the producer process's per-event cost."""
        for _ in range(3):  # the segment's end, then the next segment's start
            file = self._open()
            if file is None:
                return []
            segment, start = self._at.segment, self._at.offset
            data = file.read(_BLOCK_BYTES)
            out: list[tuple[Position, JournalRecord]] = []
            at = value_bytes = 0
            damaged = False
            while len(out) < max_records and value_bytes < max_bytes:
                if at + RECORD_HEADER.size > len(data):
                    break
                length, crc = RECORD_HEADER.unpack_from(data, at)
                if length > MAX_RECORD_BYTES:
                    damaged = True  # a length that cannot be right
                    break
                end = at + RECORD_HEADER.size + length
                if end > len(data) and not out:  # one record larger than the block
                    data += file.read(end - len(data))
                if length == 0 or end > len(data):
                    break  # not written whole yet (or zeros): read again later
                payload = data[at + RECORD_HEADER.size : end]
                if zlib.crc32(payload) != crc:
                    damaged = True
                    break
                try:
                    record = decode_payload(payload)
                except (struct.error, UnicodeDecodeError):
                    break
                at = end
                out.append((Position(segment, start + at), record))
                value_bytes += len(record.value)
            file.seek(start + at)
            self._at = Position(segment, start + at)
            if out:
                return out  # records after them, whole or damaged, are the next call's
            if damaged:
                self._skip_rest(start)
                continue
            # Nothing whole here yet: the end of this segment, for now or for good.
            newer = [i for i in self._segments() if i > segment]
            if not newer:
                return []  # the proxy is still writing it: read again later
            # A newer segment exists, so the proxy finished this one (it flushes a segment
            # before it opens the next): bytes left over are a torn write.
            self._skip_rest(start)
        return []

    def _skip_rest(self, start: int) -> None:
        assert self._file is not None
        file = self._file[1]
        end = file.seek(0, 2)
        if end > start:
            self.skipped_bytes += end - start
            log.error(
                "journal segment %020d is damaged at byte %d: skipping its last %d bytes",
                self._at.segment,
                start,
                end - start,
            )
        newer = [i for i in self._segments() if i > self._at.segment]
        self._close()
        self._at = Position(newer[0], 0) if newer else Position(self._at.segment + 1, 0)

    def _close(self) -> None:
        if self._file is not None:
            self._file[1].close()
            self._file = None
