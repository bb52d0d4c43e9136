"""The embedded engine hands its freed memory back when asked: an export reads query after query
in one process, and the engine's allocator would otherwise keep what each query freed."""

from __future__ import annotations

from pathlib import Path

from consumers.clickhouse.client import ClickHouse


def _anon_mb() -> int:
    """This process's own resident memory (not the library files' pages), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no RssAnon in /proc/self/status")


async def test_the_engines_freed_memory_goes_back_to_the_system(clickhouse: ClickHouse) -> None:
    await clickhouse.command("CREATE TABLE t (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
    await clickhouse.command(
        "INSERT INTO t SELECT number, repeat(toString(number), 40) FROM numbers(1000000)"
    )
    # Sorting a million ~250-byte strings: hundreds of MB allocated and freed by the engine.
    assert len(await clickhouse.rows("SELECT id FROM t ORDER BY s DESC LIMIT 3")) == 3
    before = _anon_mb()
    await clickhouse.release_memory()
    assert before - _anon_mb() >= 100, (before, _anon_mb())


async def test_a_servers_memory_is_left_alone() -> None:
    # Not even connected: nothing is sent to a server, whose memory is not this process's.
    await ClickHouse("http://127.0.0.1:9").release_memory()
