"""The ClickHouse sink stores the same rows, and rejects the same events, whether the runner hands
it chunk events as columns or every event as a ``Record``."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiokafka.structs import ConsumerRecord

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.decode import decode_batch
from consumers.sink import Batch, Record, WriteResult
from schemas import Codec, EventType
from tests.integration.clickhouse.synthetic import Exchange, encoded, uuid7

# Every table the sink writes, without the column the server fills in at insert time.
TABLES = {
    "requests_raw": "inserted_at",
    "chunks_raw": "inserted_at",
    "completions_raw": "inserted_at",
    "exchanges": "loaded_at",
}


async def _database(clickhouse_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    async with ClickHouse(clickhouse_url) as admin:
        await admin.command(f"CREATE DATABASE {name}")
    return f"{clickhouse_url}?database={name}"


def _fetched(messages: list[tuple[str, bytes]], first: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord("events", offset % 2, offset, 0, 0, key.encode(), value, None, len(key),
                       len(value), ())
        for offset, (key, value) in enumerate(messages, start=first)
    ]  # fmt: skip


async def _load(url: str, batches: list[Batch]) -> tuple[list[WriteResult], dict[str, Any]]:
    sink = ClickHouseSink(ClickHouse(url))
    await sink.start()
    try:
        results = [await sink.write(batch) for batch in batches]
        tables = {
            table: await sink.clickhouse.rows(
                f"SELECT * EXCEPT {skip} FROM {table} ORDER BY ALL",  # noqa: S608 (constants)
                binary_columns=("body", "data", "request_body"),
            )
            for table, skip in TABLES.items()
        }
    finally:
        await sink.stop()
    return results, tables


async def test_chunk_columns_load_the_rows_and_reject_the_events_records_do(
    clickhouse_url: str,
) -> None:
    now = time.time_ns() // 1_000_000
    good = [
        Exchange(request_id=uuid7(now + i, f"columns{i}"), received_at_ms=now + i) for i in range(5)
    ]
    # A producer bug the tables' CHECK refuses: its chunks are rejected by bisection.
    bad = Exchange(request_id="not-a-uuid", received_at_ms=now)
    codec = Codec()
    messages = encoded([*good[:2], bad, *good[2:]], codec)
    cut = len(messages) // 2  # exchanges split over two batches: assembled from memory
    fetched = [_fetched(messages[:cut], 0), _fetched(messages[cut:], cut)]

    as_columns = [decode_batch(codec, part, ClickHouseSink.columnar)[0] for part in fetched]
    as_records = [decode_batch(codec, part, {})[0] for part in fetched]
    assert all(EventType.CHUNK in batch.columns for batch in as_columns)
    assert all(not batch.columns for batch in as_records)

    results, tables = await _load(await _database(clickhouse_url), as_columns)
    expected_results, expected_tables = await _load(await _database(clickhouse_url), as_records)

    assert tables == expected_tables
    assert len(tables["exchanges"]) == len(good)
    assert len(tables["chunks_raw"]) == sum(1 for m in messages if m[0] != "not-a-uuid") - 2 * 5

    def rejected(results: list[WriteResult]) -> list[tuple[Record, str]]:
        """Each rejected record and the table that refused it (the rest of the reason names the
        database, which differs)."""
        return sorted(
            ((r.record, r.reason.split(":")[0]) for result in results for r in result.rejected),
            key=lambda item: item[0].offset,
        )

    assert rejected(results) == rejected(expected_results)
    bad_values = {value for key, value in messages if key == "not-a-uuid"}
    assert {record.value for record, _ in rejected(results)} == bad_values
