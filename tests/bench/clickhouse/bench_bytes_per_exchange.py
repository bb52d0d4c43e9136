"""Measure: bytes per exchange on the Kafka topic and on ClickHouse's disk (docs/SCALING.md).

Run by hand (not in CI), from the repository root:

    python -m tests.bench.clickhouse.bench_bytes_per_exchange --exchanges 5000 --chunks 80

Streamed chat completions of ``--chunks`` SSE chunks (one word each, from a fixed vocabulary so
text compresses like text, not like a repeated token) and ~1 KB prompts. Kafka: the events'
keys and Avro values, raw and zstd-compressed in batches of ``--batch-events`` (what a
producer batch of one partition holds), without the record framing. ClickHouse: every event
loaded through the loader's own sink into an embedded engine, parts merged (OPTIMIZE FINAL),
``bytes_on_disk`` of every table summed: one replica's disk.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time

from aiokafka.structs import ConsumerRecord
from backports import zstd  # type: ignore[import-untyped]

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.decode import decode_batch
from schemas import Codec
from tests.integration.clickhouse.synthetic import Exchange, encoded, uuid7

# The words of this module's docstring: a small English vocabulary, repeated as text repeats.
_VOCABULARY = sorted(set(re.findall(r"[a-z]+", (__doc__ or "").lower())))


def traffic(exchanges: int, chunks: int, seed: int = 7) -> list[Exchange]:
    """Streamed exchanges of ``chunks`` chunks: role, words, finish and usage, [DONE]."""
    rng = random.Random(seed)
    now = time.time_ns() // 1_000_000
    result = []
    for i in range(exchanges):
        prompt = " ".join(rng.choice(_VOCABULARY) for _ in range(180))  # ~1 KB
        answer = " ".join(rng.choice(_VOCABULARY) for _ in range(max(1, chunks - 4)))
        result.append(
            Exchange(
                request_id=uuid7(now + i, f"bytes{i}"),
                received_at_ms=now + i,
                user_text=prompt,
                answer=answer,
                gap_ms=tuple(rng.randint(5, 40) for _ in range(chunks)),
            )
        )
    return result


async def clickhouse_bytes(messages: list[tuple[str, bytes]], directory: str) -> dict[str, int]:
    codec = Codec()
    sink = ClickHouseSink(ClickHouse(f"chdb://{directory}"))
    await sink.start()
    try:
        for low in range(0, len(messages), 50_000):
            fetched = [
                ConsumerRecord("bench", 0, low + i, 0, 0, k.encode(), v, None, len(k), len(v), ())
                for i, (k, v) in enumerate(messages[low : low + 50_000])
            ]
            batch, poison = decode_batch(codec, fetched, sink.columnar)
            assert not poison, poison[:1]
            await sink.write(batch)
    finally:
        await sink.stop()
    async with ClickHouse(f"chdb://{directory}") as clickhouse:
        tables = [
            str(row[0])
            for row in await clickhouse.rows(
                "SELECT name FROM system.tables WHERE database = currentDatabase() "
                "AND engine LIKE '%MergeTree'"
            )
        ]
        for table in tables:
            await clickhouse.command(f"OPTIMIZE TABLE {table} FINAL")
        rows = await clickhouse.rows(
            "SELECT table, sum(bytes_on_disk) FROM system.parts "
            "WHERE database = currentDatabase() AND active GROUP BY table"
        )
    return {str(table): int(size) for table, size in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=5000)
    parser.add_argument("--chunks", type=int, default=80)
    parser.add_argument("--batch-events", type=int, default=800)
    args = parser.parse_args()
    exchanges = traffic(args.exchanges, args.chunks)
    messages = encoded(exchanges)
    raw = sum(len(k) + len(v) for k, v in messages)
    compressed = 0
    for low in range(0, len(messages), args.batch_events):
        batch = b"".join(k.encode() + v for k, v in messages[low : low + args.batch_events])
        compressed += len(zstd.compress(batch))
    n = args.exchanges
    print(f"{n} exchanges, {len(messages) / n:.1f} events per exchange")
    print(f"kafka: {raw / n:,.0f} B raw, {compressed / n:,.0f} B zstd per exchange")
    with tempfile.TemporaryDirectory(prefix="bench-bytes-") as directory:
        sizes = asyncio.run(clickhouse_bytes(messages, directory))
    for table, size in sorted(sizes.items()):
        print(f"clickhouse {table}: {size / n:,.0f} B per exchange")
    print(f"clickhouse total: {sum(sizes.values()) / n:,.0f} B per exchange (one replica)")


if __name__ == "__main__":
    main()
