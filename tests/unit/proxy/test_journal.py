"""The journal alone: append, read in order, acknowledge, cap, damage, restart."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import proxy.journal as journal_module
from proxy.journal import Journal, JournalError, segment_paths
from proxy.journal_record import decode_payload, encode_record
from proxy.settings import Provider, ProxySettings


def _journal(path: Path, **kwargs: int) -> Journal:
    journal = Journal(path, **{"max_bytes": 1 << 20, "segment_bytes": 4096, **kwargs})
    journal.open()
    return journal


def _values(journal: Journal, limit: int = 10_000) -> list[bytes]:
    return [record.value for _, record in journal.read(limit)]


def test_record_round_trips_key_value_and_headers() -> None:
    data = encode_record(b"k", b"\x00value", [("traceparent", b"00-ab"), ("x", b"")])
    record = decode_payload(data[8:])
    assert (record.key, record.value, record.headers) == (
        b"k",
        b"\x00value",
        [("traceparent", b"00-ab"), ("x", b"")],
    )
    assert decode_payload(encode_record(b"k", b"v", None)[8:]).headers is None


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    values = [f"event-{i:04d}".encode() * 20 for i in range(200)]  # ~50 KB: many segments
    for value in values:
        assert journal.append(b"key", value)
    assert len(segment_paths(tmp_path)) > 5
    assert journal.has_unacked
    assert _values(journal) == values
    journal.close()


def test_the_largest_event_the_proxy_makes_is_journaled_and_read_back_whole(
    tmp_path: Path,
) -> None:
    """With the default sizes, a request event carrying a 32 MiB body spills and replays whole,
    also after a restart (the journal's record limit is above Kafka's message limit)."""
    defaults = ProxySettings(providers=(Provider(name="openai", base_url="http://127.0.0.1:1"),))
    largest = os.urandom(defaults.max_event_bytes)
    journal = _journal(
        tmp_path, max_bytes=defaults.journal_max_bytes, segment_bytes=defaults.journal_segment_bytes
    )
    assert journal.append(b"key", b"small")
    assert journal.append(b"key", largest)
    assert journal.append(b"key", b"after")
    journal.close()
    reopened = _journal(
        tmp_path, max_bytes=defaults.journal_max_bytes, segment_bytes=defaults.journal_segment_bytes
    )
    assert _values(reopened) == [b"small", largest, b"after"]
    reopened.close()


def test_acknowledged_segments_are_deleted_and_not_replayed_after_restart(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    for i in range(100):
        journal.append(b"k", f"{i:03d}".encode() * 30)
    read = journal.read(60)
    journal.ack(read[-1][0], len(read))
    journal.finish_deletions()  # their files are unlinked by a worker thread
    assert len(segment_paths(tmp_path)) < 5  # the fully acknowledged ones are gone
    journal.close()

    again = _journal(tmp_path)
    assert _values(again) == [f"{i:03d}".encode() * 30 for i in range(60, 100)]
    again.close()


def test_rewind_reads_unacknowledged_records_again(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    for i in range(10):
        journal.append(b"k", bytes([i]))
    first = journal.read(4)
    journal.ack(first[1][0], 2)  # Kafka took 0 and 1; 2 and 3 failed
    journal.rewind()
    assert _values(journal) == [bytes([i]) for i in range(2, 10)]
    journal.close()


def test_fully_drained_journal_leaves_no_segment(tmp_path: Path) -> None:
    # Segments reach the recycling size (an eighth of the cap) before filling.
    journal = _journal(tmp_path, max_bytes=16 * 1024, segment_bytes=4096)
    for i in range(5):
        journal.append(b"k", bytes([i]) * 500)
    read = journal.read(100)
    journal.ack(read[-1][0], len(read))
    assert not journal.has_unacked
    assert journal.backlog_bytes == 0
    journal.finish_deletions()
    assert segment_paths(tmp_path) == []
    journal.append(b"k", b"later")  # and it keeps working afterwards
    assert _values(journal) == [b"later"]
    journal.close()


def test_small_drained_segment_is_kept_for_appends_and_gone_after_close(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    for i in range(5):
        journal.append(b"k", bytes([i]))
    read = journal.read(100)
    journal.ack(read[-1][0], len(read))
    # Below the recycling size the open segment stays: no file churn while Kafka keeps up.
    assert len(segment_paths(tmp_path)) == 1
    assert journal.backlog_bytes == 0
    assert journal.size_bytes > 0
    journal.append(b"k", b"later")
    assert journal.backlog_bytes > 0
    assert _values(journal) == [b"later"]
    journal.ack(journal.tail, 1)
    journal.close()
    assert segment_paths(tmp_path) == []

    again = _journal(tmp_path)
    assert _values(again) == []
    again.close()


def test_leftover_records_include_acknowledged_ones(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    for i in range(6):
        journal.append(f"k{i}".encode(), bytes([i]))
    journal.ack(journal.read(3)[-1][0], 3)
    journal.flush()
    journal.save_cursor()
    # A killed process: its files close (the lock goes with them), nothing else happens.
    assert journal._lock_file is not None
    assert journal._writer is not None
    journal._writer.file.close()
    journal._close_reader()
    journal._lock_file.close()
    journal._lock_file = None

    again = _journal(tmp_path)
    assert [r.key for r in again.leftover_records()] == [f"k{i}".encode() for i in range(6)]
    assert _values(again) == [bytes([i]) for i in range(3, 6)]  # replay starts at the cursor
    again.close()


def test_the_cursor_saved_from_another_thread_is_where_a_killed_process_restarts(
    tmp_path: Path,
) -> None:
    journal = _journal(tmp_path)
    for i in range(6):
        journal.append(f"k{i}".encode(), bytes([i]))
    journal.ack(journal.read(4)[-1][0], 4)
    journal.flush()
    saver = threading.Thread(target=journal.save_cursor_at, args=(journal.acked,))
    saver.start()
    saver.join()
    assert not list(tmp_path.glob("cursor.*"))  # its temporary file renamed into place
    # A killed process: its files close (the lock goes with them), nothing else happens.
    assert journal._lock_file is not None
    assert journal._writer is not None
    journal._writer.file.close()
    journal._close_reader()
    journal._lock_file.close()
    journal._lock_file = None

    again = _journal(tmp_path)
    assert _values(again) == [bytes([i]) for i in range(4, 6)]  # replay starts at the cursor
    again.close()


def test_cap_drops_and_counts(tmp_path: Path) -> None:
    journal = _journal(tmp_path, max_bytes=8192, segment_bytes=4096)
    accepted = sum(journal.append(b"k", b"x" * 500) for _ in range(40))
    assert 10 <= accepted < 40
    assert journal.stats.dropped_full == 40 - accepted
    assert journal.size_bytes <= 8192
    assert len(_values(journal)) == accepted
    journal.close()


def test_torn_tail_is_counted_and_never_replayed(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    for i in range(5):
        journal.append(b"k", f"good-{i}".encode())
    journal.close()
    [segment] = segment_paths(tmp_path)
    size = segment.stat().st_size
    with segment.open("ab") as f:  # a crash mid-write: a record header and half its payload
        f.write(encode_record(b"k", b"torn" * 50, None)[:60])

    again = _journal(tmp_path)
    assert _values(again) == [f"good-{i}".encode() for i in range(5)]
    assert again.stats.corrupt_segments == 1
    assert again.stats.corrupt_bytes == 60
    assert segment.stat().st_size == size + 60  # skipped, not rewritten
    again.append(b"k", b"after")  # new records go to a fresh segment and are read normally
    assert _values(again) == [b"after"]
    again.close()


def test_flipped_bit_ends_the_segment_and_later_segments_still_replay(tmp_path: Path) -> None:
    journal = _journal(tmp_path, segment_bytes=1024)
    for i in range(30):
        journal.append(b"k", f"{i:02d}".encode() * 40)
    journal.close()
    first = segment_paths(tmp_path)[0]
    damaged = bytearray(first.read_bytes())
    damaged[97 + 50] ^= 0xFF  # inside the second record's payload (records are 97 bytes)
    first.write_bytes(bytes(damaged))

    again = _journal(tmp_path, segment_bytes=1024)
    values = _values(again)
    assert again.stats.corrupt_segments == 1
    assert values  # the other segments
    assert values[0] == b"00" * 40  # before the damage
    assert b"01" * 40 not in values  # the damaged record and the rest of its segment
    assert values == sorted(values)
    again.close()


def test_one_process_per_directory(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    with pytest.raises(JournalError, match="in use by another proxy"):
        _journal(tmp_path)
    journal.close()


def test_sync_makes_appends_visible_on_disk(tmp_path: Path) -> None:
    journal = _journal(tmp_path, segment_bytes=1 << 16)
    journal.append(b"k", b"v" * 100)
    [segment] = segment_paths(tmp_path)
    assert segment.stat().st_size == 0  # still in the user-space buffer
    journal.sync()
    assert segment.stat().st_size > 100
    assert journal.stats.fsyncs == 1
    journal.close()


def test_only_appends_not_yet_synced_need_a_sync(tmp_path: Path) -> None:
    journal = _journal(tmp_path, segment_bytes=256)
    assert not journal.needs_sync  # a fresh journal: the periodic sync has nothing to do
    journal.append(b"k", b"v" * 100)
    assert journal.needs_sync
    journal.sync()
    assert not journal.needs_sync
    for _ in range(3):  # rolls over to a new segment: the retired one still needs its fsync
        journal.append(b"k", b"v" * 100)
    journal.sync()
    assert not journal.needs_sync
    assert len(segment_paths(tmp_path)) >= 2
    journal.close()


_FULL_DISK_SCRIPT = """
import resource, sys
from pathlib import Path
from proxy.journal import Journal

limit = 20_000
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
journal = Journal(Path(sys.argv[1]), max_bytes=1 << 20, segment_bytes=1 << 16, buffer_bytes=4096)
journal.open()
# A per-file size limit makes the kernel refuse writes with EFBIG: a full disk, for real.
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
accepted = []
unhealthy = False
for i in range(200):
    value = b"%04d" % i * 25
    if journal.append(b"k", value):
        accepted.append(value)
    journal.flush()
    unhealthy = unhealthy or not journal.healthy
print("unhealthy", unhealthy)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed
for i in range(200, 210):
    value = b"%04d" % i * 25
    assert journal.append(b"k", value)
    accepted.append(value)
journal.sync()
lost = journal.stats.lost_buffered
readable = [r.value for _, r in journal.read(10_000)]
survivors = [v for v in accepted if v in set(readable)]
print("dropped", journal.stats.dropped_io_error, "lost", lost)
print("accepted", len(accepted), "readable", len(readable), "in_order", readable == survivors)
print("all_accounted", len(accepted) - lost == len(readable))
print("corrupt", journal.stats.corrupt_segments)
journal.close()
"""


def test_full_disk_drops_are_counted_and_the_rest_replays_after_space_is_freed(
    tmp_path: Path,
) -> None:
    """B7 on a real kernel refusal (EFBIG from RLIMIT_FSIZE in a child process)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path / "journal")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert out["unhealthy"] == "True"
    dropped, lost = int(out["dropped"].split()[0]), int(out["dropped"].split()[2])
    assert dropped + lost > 0  # refusals and buffered losses were counted
    assert out["all_accounted"] == "True"  # accepted - lost == replayable, exactly
    assert out["accepted"].endswith("in_order True")
    assert out["corrupt"] == "0"  # the torn tail was cut, never left for the reader


def test_records_are_never_replayed_into_another_topic(tmp_path: Path) -> None:
    journal = Journal(tmp_path, topic="exchanges-a")
    journal.open()
    journal.append(b"k", b"for a")
    journal.close()
    other = Journal(tmp_path, topic="exchanges-b")
    with pytest.raises(JournalError, match="holds events for topic 'exchanges-a'"):
        other.open()
    same = Journal(tmp_path, topic="exchanges-a")
    same.open()  # the lock was released by the refusal
    read = same.read(10)
    same.ack(read[-1][0], len(read))
    same.close()
    drained = Journal(tmp_path, topic="exchanges-b")
    drained.open()  # an empty journal may change hands
    drained.close()


def test_steady_traffic_acknowledged_one_drain_behind_keeps_the_disk_small(tmp_path: Path) -> None:
    """Kafka keeps up but the open segment is never acknowledged to its last byte: segments are
    still recycled, so the disk holds about the recycling size, not a whole segment."""
    journal = _journal(tmp_path, max_bytes=1 << 20, segment_bytes=512 * 1024)  # recycle: 128 KiB
    previous = journal.tail
    largest = 0
    for i in range(3000):  # ~600 KB
        journal.append(b"k", bytes([i % 256]) * 200)
        if i % 10 == 9:
            journal.ack(previous, 10)  # the drain before this one
            previous = journal.tail
            largest = max(largest, journal.size_bytes)
            journal.finish_deletions()
            assert len(segment_paths(tmp_path)) <= 2
    assert largest < 160 * 1024
    journal.ack(journal.tail, 10)
    journal.close()
    assert segment_paths(tmp_path) == []


def test_a_drained_segment_leaves_at_once_and_is_unlinked_off_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlinking a drained segment frees its blocks and pages (up to 1.4 ms for 4 MiB held the
    event loop): the journal forgets it at the acknowledgement, a worker thread unlinks it."""
    unlinked_on: list[str] = []
    unlink = journal_module._unlink

    def noting_thread(path: Path) -> None:
        unlinked_on.append(threading.current_thread().name)
        unlink(path)

    monkeypatch.setattr(journal_module, "_unlink", noting_thread)
    journal = _journal(tmp_path)
    for n in range(100):
        journal.append(b"k", b"%04d" % n * 50)
    records = journal.read(10_000)
    assert len(segment_paths(tmp_path)) > 2
    journal.ack(records[-1][0], len(records))
    assert journal.size_bytes < 4096  # forgotten the moment Kafka has them
    journal.close()
    assert unlinked_on
    assert all(name.startswith("journal-unlink") for name in unlinked_on)
    assert threading.current_thread().name not in unlinked_on
    assert segment_paths(tmp_path) == []  # close waits for the thread
