"""The producer process's reader of a journal another process writes (proxy/journal_tail.py)."""

from __future__ import annotations

from pathlib import Path

from proxy.journal import Journal, Position
from proxy.journal_record import encode_record
from proxy.journal_tail import _BLOCK_BYTES, JournalTail


def _keys(tail: JournalTail) -> list[bytes]:
    return [record.key for _, record in tail.read(100, 1 << 20)]


def test_follows_appends_and_new_segments_and_waits_for_a_half_written_record(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.open()
    tail = JournalTail(tmp_path, journal.acked)
    journal.append(b"a", b"1")
    assert _keys(tail) == []  # still in the writer's buffer: not in the kernel yet
    journal.flush()
    assert _keys(tail) == [b"a"]
    # Half a record at the end of the newest segment: the writer is mid-write; read it later.
    record = encode_record(b"b", b"2", None)
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with segment.open("ab") as file:
        file.write(record[:5])
    assert _keys(tail) == []
    with segment.open("ab") as file:
        file.write(record[5:])
    assert _keys(tail) == [b"b"]
    journal.close()
    # A new run writes to a new segment; the reader moves on to it.
    journal = Journal(tmp_path)
    journal.open()
    journal.append(b"c", b"3")
    journal.flush()
    assert _keys(tail) == [b"c"]
    tail.close()
    journal.close()


def _after_a_run_that_left(
    tmp_path: Path, keys: list[bytes], garbage: bytes, then: bytes
) -> tuple[Journal, JournalTail]:
    """A run that journaled ``keys`` and left ``garbage`` at the end of its segment, the next run
    after it journaling ``then``, and a tail reading from the start."""
    journal = Journal(tmp_path)
    journal.open()
    for number, key in enumerate(keys, start=1):
        journal.append(key, str(number).encode())
    journal.flush()
    journal.close()
    with sorted(tmp_path.glob("*.seg"))[-1].open("ab") as file:
        file.write(garbage)
    journal = Journal(tmp_path)
    journal.open()
    journal.append(then, b"next")
    journal.flush()
    return journal, JournalTail(tmp_path, Position(0, 0))


def test_a_torn_record_in_an_older_segment_is_skipped_not_waited_for(tmp_path: Path) -> None:
    torn = encode_record(b"torn", b"x" * 100, None)[:20]  # a proxy killed mid-write
    journal, tail = _after_a_run_that_left(tmp_path, [b"a"], torn, then=b"b")
    assert _keys(tail) == [b"a", b"b"]
    assert tail.skipped_bytes == 20
    tail.close()
    journal.close()


def test_reads_in_blocks_across_their_edges_and_records_larger_than_a_block(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.open()
    # Records of every size around the block's, so some straddle a block's end, one is larger
    # than a block, and the limits cut a block short.
    sizes = [1, 100, _BLOCK_BYTES - 30, 7, _BLOCK_BYTES * 3, 50_000, 3] * 3
    for number, size in enumerate(sizes):
        journal.append(f"k{number}".encode(), bytes([number]) * size)
    journal.flush()
    tail = JournalTail(tmp_path, journal.acked)
    got: list[tuple[Position, bytes, bytes]] = []
    while batch := tail.read(4, 1 << 20):
        assert len(batch) <= 4
        got += [(position, record.key, record.value) for position, record in batch]
    assert [key for _, key, _ in got] == [f"k{n}".encode() for n in range(len(sizes))]
    assert [value for _, _, value in got] == [bytes([n]) * s for n, s in enumerate(sizes)]
    # Each position is where the next record starts: reading from one goes on from there.
    again = JournalTail(tmp_path, got[9][0])
    assert [record.key for _, record in again.read(2, 1 << 30)] == [b"k10", b"k11"]
    again.close()
    tail.close()
    journal.close()


def test_records_before_damage_are_read_then_the_damage_is_skipped(tmp_path: Path) -> None:
    damaged = bytearray(encode_record(b"c", b"3" * 50, None))
    damaged[-1] ^= 0xFF  # its checksum no longer matches
    journal, tail = _after_a_run_that_left(tmp_path, [b"a", b"b"], bytes(damaged), then=b"d")
    assert _keys(tail) == [b"a", b"b", b"d"]
    assert tail.skipped_bytes == len(damaged)
    tail.close()
    journal.close()
