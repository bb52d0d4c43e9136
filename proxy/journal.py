"""The proxy's durable log: an append-only, checksummed, size-capped journal on local disk.

Every event is appended here as it is published (a write-ahead log), so it is in the kernel's page
cache before its exchange's last byte goes to the client and outlives a killed proxy; while Kafka
keeps up it is acknowledged within a linger and its segment deleted, and when Kafka is down or slow
the unacknowledged records are read back in order once it returns. This module is pure file I/O
(no Kafka): the publisher decides when to spill, what to replay, and acknowledges what Kafka took.

Layout: a directory of segment files ``<id:020d>.seg``; each is a sequence of checksummed
records (their bytes: proxy/journal_record.py). A ``cursor`` file remembers how far replay has
been acknowledged, so a restart does not re-send what Kafka already holds. A segment is deleted
only once every record in it was acknowledged.

Durability: ``append()`` writes into a user-space buffer on the caller's thread (microseconds, no
syscall on most calls); ``flush()`` hands the buffer to the OS (one ``write``, no fsync): the
proxy calls it before an exchange's response head and before its last byte, so a process crash
(SIGKILL) loses nothing a client saw. ``sync()`` -- called by the publisher from a worker thread
while records wait longer than ``fsync_interval`` for Kafka -- also fsyncs, so a machine crash
loses at most that interval. Both windows are stated in docs/OPERATIONS.md.

Damage: a record whose length or checksum does not match (a torn write at a crash, a bad disk)
ends the readable part of its segment: the rest of that segment is counted as corrupt and skipped,
never replayed. Appending never writes into an old segment: every start opens a fresh one.

Length: ``Journal`` is one state machine over the segments, the writer, the reader and the cursor,
shared by append, replay, acknowledgement and damage handling under one lock; its methods keep
each other's invariants (what may be deleted, where reading resumes), so it stays in one module.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from proxy.journal_record import (
    MAX_RECORD_BYTES,
    RECORD_HEADER,
    Headers,
    JournalRecord,
    decode_payload,
    record_parts,
    records,
)

log = logging.getLogger(__name__)

_SEGMENT_SUFFIX = ".seg"
_CURSOR = "cursor"
_TOPIC = "topic"
_LOCK = ".lock"
# A fully acknowledged active segment is closed and deleted once it holds this much (or an
# eighth of the cap, if smaller): few file creations while Kafka keeps up, and little disk held by
# records Kafka already has.
_RECYCLE_BYTES = 4 * 1024 * 1024


class JournalError(Exception):
    """The journal directory cannot be used; the message says what to fix."""

    retriable = False


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a record ends: acknowledging a position acknowledges everything before it."""

    segment: int
    offset: int


@dataclass(slots=True)
class JournalStats:
    appended: int = 0
    acknowledged: int = 0
    dropped_full: int = 0
    dropped_io_error: int = 0  # refused by a failing disk (append returned False)
    lost_buffered: int = 0  # appended, then lost when the disk failed before they were written
    corrupt_segments: int = 0
    corrupt_bytes: int = 0
    fsyncs: int = 0


@dataclass(slots=True)
class _Segment:
    id: int
    path: Path
    end: int  # bytes of complete records written to the OS (or buffered, for the active one)
    corrupt: bool = False


@dataclass(frozen=True, slots=True)
class _Writer:
    segment: _Segment
    file: BinaryIO


class Journal:
    """One process's journal directory. Not thread-safe except ``sync()``, which may run in a worker
    thread while the event loop appends."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1024**3,
        segment_bytes: int = 64 * 1024**2,
        buffer_bytes: int = 256 * 1024,
        topic: str = "",
    ) -> None:
        if segment_bytes > max_bytes:
            raise JournalError(
                f"journal segment size ({segment_bytes} bytes) exceeds the journal cap "
                f"({max_bytes} bytes); lower LOGORHYTHMS_JOURNAL_SEGMENT_BYTES or raise "
                "LOGORHYTHMS_JOURNAL_MAX_BYTES"
            )
        self.directory = directory
        self.topic = topic  # where the records are bound; a journal never replays elsewhere
        self.stats = JournalStats()
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._buffer_bytes = buffer_bytes
        self._segments: list[_Segment] = []  # oldest first; the last one may be the writer's
        self._writer: _Writer | None = None
        self._unsynced: list[BinaryIO] = []  # retired segment files not fsynced yet
        self._unlinking: ThreadPoolExecutor | None = None  # started at the first deletion
        self._appended_since_sync = False  # the writer's segment has records not fsynced yet
        # Record boundaries of the writer's segment not yet known to be in the file: after a
        # failed write they tell exactly which records were lost and where to cut.
        self._unflushed_ends: list[int] = []
        self._flushed_end = 0
        self._lock = threading.Lock()  # between append/flush (loop) and sync (worker thread)
        self._lock_file: BinaryIO | None = None
        self._acked = Position(0, 0)
        self._read_at = Position(0, 0)
        self._reader: tuple[int, BinaryIO] | None = None
        self._next_id = 1
        self._size = 0  # bytes in all segments, kept as a running total for the hot path
        self._io_failed = False
        self._recycle_bytes = min(_RECYCLE_BYTES, max_bytes // 8)
        self._leftovers: list[_Segment] = []  # an earlier run's segments, found at open()

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Take the directory (one proxy per journal) and find what an earlier run left."""
        if self._lock_file is not None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock_file = (self.directory / _LOCK).open("ab")
        except OSError as exc:
            raise JournalError(
                f"cannot use journal directory {self.directory}: {exc}; "
                "set LOGORHYTHMS_JOURNAL_DIR to a writable local directory"
            ) from exc
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise JournalError(
                f"journal directory {self.directory} is in use by another proxy process; "
                "give every proxy its own LOGORHYTHMS_JOURNAL_DIR"
            ) from None
        self._lock_file = lock_file
        self._segments = []
        for path in sorted(self.directory.glob(f"*{_SEGMENT_SUFFIX}")):
            with contextlib.suppress(ValueError):
                self._segments.append(_Segment(int(path.stem), path, path.stat().st_size))
        self._size = sum(segment.end for segment in self._segments)
        self._claim_topic()
        self._read_at = self._acked = self._load_cursor()
        self._next_id = max([self._acked.segment, *(s.id for s in self._segments)]) + 1
        self._leftovers = list(self._segments)
        if self._segments:
            log.warning(
                "journal %s holds %d segment(s), %d bytes from an earlier run: replaying them",
                self.directory,
                len(self._segments),
                self.size_bytes,
            )

    def _claim_topic(self) -> None:
        """Records carry no topic: refuse to replay an earlier run's records into another one."""
        path = self.directory / _TOPIC
        try:
            previous = path.read_text().strip()
        except FileNotFoundError:
            previous = self.topic
        if self._segments and previous != self.topic:
            self._segments = []
            assert self._lock_file is not None
            self._lock_file.close()
            self._lock_file = None
            raise JournalError(
                f"journal directory {self.directory} holds events for topic {previous!r}, not "
                f"{self.topic!r}: set LOGORHYTHMS_TOPIC={previous} until it has been replayed, or "
                "give this proxy another LOGORHYTHMS_JOURNAL_DIR"
            )
        path.write_text(self.topic + "\n")

    def close(self) -> None:
        """Flush, fsync, remember the replay cursor and release the directory."""
        if self._lock_file is None:
            return
        self._close_reader()
        try:
            self.sync()
        except OSError as exc:
            log.error("journal fsync at close failed: %s; the last records may not be durable", exc)
        for file in self._unsynced:  # only left when the fsync above failed
            file.close()
        self._unsynced = []
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.file.close()
            except OSError as exc:  # the fsync above failed too, and said so
                log.error("closing the journal segment %s failed: %s", writer.segment.path, exc)
            if writer.segment.end == 0:
                self._delete(writer.segment)
        if not self.has_unacked:
            # Kafka holds every record: a clean stop leaves no segment behind.
            for segment in list(self._segments):
                self._delete(segment)
        self._save_cursor()
        self.finish_deletions()  # a clean stop leaves no drained segment behind
        self._lock_file.close()
        self._lock_file = None

    # -- writing ---------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes on disk (what the cap limits), acknowledged records of the open segment too."""
        return self._size

    @property
    def backlog_bytes(self) -> int:
        """Bytes of records Kafka has not acknowledged (what an outage piles up)."""
        acked = self._acked
        return sum(
            s.end - (acked.offset if s.id == acked.segment else 0)
            for s in self._segments
            if s.id >= acked.segment and not s.corrupt
        )

    @property
    def tail(self) -> Position:
        """Where the last appended record ends: acknowledging it acknowledges everything."""
        if self._writer is not None:
            return Position(self._writer.segment.id, self._writer.segment.end)
        if self._segments:
            last = self._segments[-1]
            return Position(last.id, last.end)
        return self._acked

    @property
    def has_unacked(self) -> bool:
        """True while the journal may hold a record Kafka has not acknowledged."""
        acked = self._acked
        return any(
            s.end > (acked.offset if s.id == acked.segment else 0)
            for s in reversed(self._segments)
            if s.id >= acked.segment and not s.corrupt
        )

    @property
    def healthy(self) -> bool:
        return not self._io_failed

    def append(self, key: bytes, value: bytes, headers: Headers | None = None) -> bool:
        """Add one record at the end. False (and counted) when the cap or the disk refuses it."""
        parts = record_parts(key, value, headers)
        size = sum(len(part) for part in parts)
        if self._size + size > self._max_bytes:
            self.stats.dropped_full += 1
            return False
        with self._lock:
            try:
                writer = self._writable(size)
                # Small pieces gather in the file's buffer; a piece larger than the buffer (a
                # large body's event) goes to the kernel straight from the caller's bytes.
                for part in parts:
                    writer.file.write(part)
            except OSError as exc:
                # A record cut short is cut off the file with everything unwritten.
                self.stats.dropped_io_error += 1
                self._failed_io(exc)
                return False
            writer.segment.end += size
            self._size += size
            self._unflushed_ends.append(writer.segment.end)
            self._appended_since_sync = True
        self._io_failed = False
        self.stats.appended += 1
        return True

    def _writable(self, size: int) -> _Writer:
        writer = self._writer
        if (
            writer is not None
            and writer.segment.end + size <= self._segment_bytes
            # While Kafka keeps up (its acknowledgements reach into this segment), start a new
            # segment every recycling size, so the old one can be deleted once acknowledged:
            # under steady traffic the open segment is never acknowledged to its last byte.
            and not (
                writer.segment.end >= self._recycle_bytes
                and self._acked.segment == writer.segment.id
            )
        ):
            return writer
        if writer is not None:
            if writer.segment.end == 0:
                return writer  # a record bigger than a segment gets a segment of its own
            writer.file.flush()
            self._unsynced.append(writer.file)
        self._unflushed_ends, self._flushed_end = [], 0
        path = self.directory / f"{self._next_id:020d}{_SEGMENT_SUFFIX}"
        file = path.open("xb", buffering=self._buffer_bytes)
        segment = _Segment(self._next_id, path, 0)
        self._next_id += 1
        self._segments.append(segment)
        self._writer = _Writer(segment, file)
        return self._writer

    def _failed_io(self, exc: OSError) -> None:
        """A full or failing disk: cut the segment back to its last whole record that reached the
        file, count the buffered records that did not, and start a fresh segment next time."""
        if not self._io_failed:
            log.error("journal write failed (%s): events are being dropped", exc)
        self._io_failed = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(OSError):
            writer.file.close()  # its buffer is lost with it
        try:
            on_disk = writer.segment.path.stat().st_size
        except OSError:
            on_disk = self._flushed_end
        keep = max([self._flushed_end, *(e for e in self._unflushed_ends if e <= on_disk)])
        lost = sum(1 for e in self._unflushed_ends if e > keep)
        self._unflushed_ends, self._flushed_end = [], 0
        self._size -= writer.segment.end - keep
        writer.segment.end = keep
        with contextlib.suppress(OSError):
            os.truncate(writer.segment.path, keep)  # no torn record for the reader to meet
        if lost:
            self.stats.lost_buffered += lost
            log.error("journal lost %d buffered events on the failed write", lost)

    def flush(self) -> None:
        """Hand buffered records to the OS (cheap; no fsync), so readers and crashes see them."""
        with self._lock:
            writer = self._writer
            if writer is None:
                return
            try:
                writer.file.flush()
            except OSError as exc:
                self._failed_io(exc)
            else:
                self._flushed_end = writer.segment.end
                self._unflushed_ends = []

    @property
    def acked(self) -> Position:
        return self._acked

    @property
    def needs_sync(self) -> bool:
        """Something appended is not known to be durable yet: while Kafka keeps up, never, so
        the periodic sync costs nothing (no worker-thread hop, no fsync)."""
        return self._appended_since_sync or bool(self._unsynced)

    def sync(self) -> None:
        """Make everything appended so far durable. Safe to call from a worker thread."""
        with self._lock:
            self._appended_since_sync = False  # an append after this line sets it again
            retired, self._unsynced = self._unsynced, []
            fd = None
            if self._writer is not None:
                self._writer.file.flush()
                fd = self._writer.file.fileno()
        # fsync outside the lock: appends keep going while the disk works.
        for file in retired:
            os.fsync(file.fileno())
            file.close()
        if fd is not None:
            os.fsync(fd)
        if retired or fd is not None:
            self.stats.fsyncs += 1

    # -- reading and acknowledging ---------------------------------------------------------------

    def read(
        self, max_records: int, max_bytes: int | None = None
    ) -> list[tuple[Position, JournalRecord]]:
        """The next records after the read position, oldest first: at most ``max_records``, and
        no more once their values reach ``max_bytes`` (at least one record)."""
        out: list[tuple[Position, JournalRecord]] = []
        self.flush()
        read_bytes = 0
        while len(out) < max_records and (max_bytes is None or read_bytes < max_bytes):
            segment = self._segment(self._read_at.segment)
            if segment is None:
                break
            if self._read_at.offset >= segment.end or segment.corrupt:
                following = [s for s in self._segments if s.id > segment.id]
                if (
                    segment.corrupt
                    and self._acked >= self._read_at
                    and not self._is_active(segment)
                ):
                    # Nothing read from it is waiting for Kafka: the damaged segment can go.
                    self._acked = self._read_at = Position(segment.id + 1, 0)
                    self._delete(segment)
                if not following:
                    break
                self._close_reader()
                self._read_at = max(self._read_at, Position(following[0].id, 0))
                continue
            item = self._read_one(segment)
            if item is None:
                continue  # damage: the segment is now marked corrupt and skipped
            out.append(item)
            read_bytes += len(item[1].value)
        return out

    def _read_one(self, segment: _Segment) -> tuple[Position, JournalRecord] | None:
        if self._reader is None or self._reader[0] != segment.id:
            self._close_reader()
            opened = segment.path.open("rb")
            opened.seek(self._read_at.offset)
            self._reader = (segment.id, opened)
        file = self._reader[1]
        header = file.read(RECORD_HEADER.size)
        length, crc = RECORD_HEADER.unpack(header) if len(header) == RECORD_HEADER.size else (0, 0)
        payload = file.read(length) if 0 < length <= MAX_RECORD_BYTES else b""
        end = self._read_at.offset + RECORD_HEADER.size + length
        if not payload or len(payload) != length or zlib.crc32(payload) != crc or end > segment.end:
            self._mark_corrupt(segment)
            return None
        try:
            record = decode_payload(payload)
        except (struct.error, UnicodeDecodeError):
            self._mark_corrupt(segment)
            return None
        self._read_at = Position(segment.id, end)
        return self._read_at, record

    def _mark_corrupt(self, segment: _Segment) -> None:
        lost = segment.end - self._read_at.offset
        self.stats.corrupt_segments += 1
        self.stats.corrupt_bytes += lost
        segment.corrupt = True
        self._close_reader()
        log.error(
            "journal segment %s is damaged at byte %d: skipping its last %d bytes",
            segment.path.name,
            self._read_at.offset,
            lost,
        )
        if self._is_active(segment):
            self._retire_writer()  # never append after damage: the next record starts afresh

    def _is_active(self, segment: _Segment) -> bool:
        return self._writer is not None and self._writer.segment is segment

    def _retire_writer(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.file.flush()
                self._unsynced.append(writer.file)

    def ack(self, position: Position, count: int) -> None:
        """Kafka holds every record up to ``position`` (``count`` of them since the last ack)."""
        self._acked = max(self._acked, position)
        self.stats.acknowledged += count
        for segment in list(self._segments):
            finished = segment.corrupt or position.offset >= segment.end
            if segment.id < position.segment or (segment.id == position.segment and finished):
                if self._is_active(segment):
                    if segment.end < self._recycle_bytes:
                        continue  # keep appending to it: the cursor says where replay starts
                    # Drained to the last byte: close it so a crash has nothing to re-send.
                    self._retire_writer()
                self._delete(segment)

    def rewind(self) -> None:
        """Go back to the last acknowledged record: what was read since is read again."""
        self._close_reader()
        self._read_at = self._acked

    def _segment(self, segment_id: int) -> _Segment | None:
        for segment in self._segments:
            if segment.id >= segment_id:
                if segment.id > segment_id:
                    self._read_at = Position(segment.id, 0)
                return segment
        return None

    def finish_deletions(self) -> None:
        """Wait until the files of every segment the journal dropped are unlinked (``close``
        does; so do tests that look at the directory)."""
        if self._unlinking is not None:
            self._unlinking.shutdown(wait=True)
            self._unlinking = None

    def _delete(self, segment: _Segment) -> None:
        if self._reader is not None and self._reader[0] == segment.id:
            self._close_reader()
        with self._lock:
            # A retired segment Kafka has whole needs no fsync: just close its file.
            for file in [f for f in self._unsynced if f.name == str(segment.path)]:
                self._unsynced.remove(file)
                with contextlib.suppress(OSError):
                    file.close()
        # Unlinking frees the file's blocks and pages: a drained 4 MiB segment held the event
        # loop 0.3-1.4 ms, so a worker thread does it. The journal forgets the segment now; a
        # process killed before the thread ran leaves a segment Kafka has whole, which the next
        # run replays from its cursor at worst (sent twice, as after any kill; never lost).
        if self._unlinking is None:
            self._unlinking = ThreadPoolExecutor(1, thread_name_prefix="journal-unlink")
        self._unlinking.submit(_unlink, segment.path)
        self._segments.remove(segment)
        self._size -= segment.end

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None

    def _load_cursor(self) -> Position:
        try:
            segment, offset = (self.directory / _CURSOR).read_text().split()
            return Position(int(segment), int(offset))
        except (OSError, ValueError):
            return Position(self._segments[0].id if self._segments else 0, 0)

    def _save_cursor(self) -> None:
        tmp = self.directory / f"{_CURSOR}.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(f"{self._acked.segment} {self._acked.offset}\n")
            os.replace(tmp, self.directory / _CURSOR)

    def save_cursor(self) -> None:
        """Remember the acknowledged position (cheap; called periodically by the publisher)."""
        self._save_cursor()

    def save_cursor_at(self, position: Position) -> None:
        """Remember ``position`` (an acknowledged one), from any thread: it touches nothing but
        its own temporary file and the cursor. Creating and renaming a file can wait on a busy
        disk for milliseconds, so the publisher calls this off the event loop. A write that
        lands after a newer one leaves the cursor behind: a restart re-sends a little more,
        never less."""
        tmp = self.directory / f"{_CURSOR}.saving"
        with contextlib.suppress(OSError):
            tmp.write_text(f"{position.segment} {position.offset}\n")
            os.replace(tmp, self.directory / _CURSOR)

    def leftover_records(self) -> Iterator[JournalRecord]:
        """Every readable record of the segments an earlier run left (acknowledged ones too),
        oldest first, up to the first damage in each: what that run published last."""
        for segment in self._leftovers:
            try:
                data = segment.path.read_bytes()
            except OSError:
                continue
            yield from records(data)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # left behind: the next run replays it from its cursor at worst
        log.warning("could not delete the drained journal segment %s: %s", path, exc)


def segment_paths(directory: Path) -> Sequence[Path]:
    """The segment files in a journal directory, oldest first (for operators and tests)."""
    return sorted(directory.glob(f"*{_SEGMENT_SUFFIX}"))
