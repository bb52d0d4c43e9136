"""Our hand-written code against the library path it replaces, side by side, in-process.

Four pairs, each on the events or keys the services really handle:

- the compiled Avro writer (``Codec.encode``) against fastavro's ``schemaless_writer``, on the
  proxy's request (1 KB chat body), chunk (one SSE frame) and completed events;
- the compiled Avro reader (``Codec.decode``) and the column reader (``Codec.columns``) against
  fastavro's ``schemaless_reader``, on the loader's traffic mix (tests/bench/clickhouse);
- ``proxy.batching.partition_for`` against aiokafka's ``DefaultPartitioner`` (murmur2);
- ``proxy.capture.new_request_id`` (os.urandom per id) against the same UUIDv7 built from
  ``os.urandom(10)`` or ``secrets.token_bytes(10)`` per id.

Thread CPU time, best of several rounds (noise on a shared machine only ever adds time). Run by
hand from the repository root:

    python -m tests.bench.bench_own_vs_library [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import fastavro
from aiokafka.partitioner import DefaultPartitioner

from consumers.clickhouse.sink import ClickHouseSink
from proxy import capture
from proxy.batching import partition_for
from schemas import Codec, EventType
from schemas.codec import MAGIC
from tests.bench.clickhouse.bench_loader import traffic
from tests.bench.proxy.bench_capture_cost import Steps
from tests.integration.clickhouse.synthetic import encoded

_HEADER = len(MAGIC) + 8


def best_ns(fn: Callable[[], object], iterations: int, rounds: int) -> float:
    """Best-of-rounds thread CPU nanoseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time_ns()
        for _ in range(iterations):
            fn()
        best = min(best, (time.thread_time_ns() - started) / iterations)
    return best


def best_ns_over(fn: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    """Best-of-rounds thread CPU nanoseconds per item, calling ``fn`` once per item."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time_ns()
        for item in items:
            fn(item)
        best = min(best, (time.thread_time_ns() - started) / len(items))
    return best


def writer_pairs(rounds: int, iterations: int) -> dict[str, float]:
    steps = Steps(1024)
    codec = steps.codec
    records = {
        EventType.REQUEST: steps.request_record,
        EventType.CHUNK: steps.chunk_record,
        EventType.COMPLETED: steps.completed_record,
    }
    out: dict[str, float] = {}
    for event_type, record in records.items():
        header, parsed = codec._current[event_type]

        def library(parsed: Any = parsed, record: Any = record, header: bytes = header) -> bytes:
            buffer = io.BytesIO()
            buffer.write(header)
            fastavro.schemaless_writer(buffer, parsed, record)
            return buffer.getvalue()

        if library() != codec.encode(event_type, record):
            raise AssertionError(f"{event_type}: the two writers disagree")
        out[f"write.{event_type.value}.ours"] = best_ns(
            lambda t=event_type, r=record: codec.encode(t, r), iterations, rounds
        )
        out[f"write.{event_type.value}.fastavro"] = best_ns(library, iterations, rounds)
    return out


def reader_pairs(rounds: int, exchanges: int) -> dict[str, float]:
    codec = Codec()
    messages = [value for _, value in encoded(traffic(exchanges), codec)]
    writers = codec._writers
    readers = codec._readers

    def library(data: bytes) -> object:
        writer = writers[data[2:_HEADER]]
        reader = readers[writer.type]
        return fastavro.schemaless_reader(
            io.BytesIO(data[_HEADER:]), writer.parsed, None if writer.parsed is reader else reader
        )

    for data in messages[:200]:
        if library(data) != codec.decode(data).record:
            raise AssertionError("the two readers disagree")

    def columns(data: bytes) -> object:
        # What the ClickHouse sink does: chunk events into columns, the rest as records.
        if decoder.append(data) is None:
            return codec.decode(data)
        return None

    out = {
        "read.mix.ours": best_ns_over(codec.decode, messages, rounds),
        "read.mix.fastavro": best_ns_over(library, messages, rounds),
    }
    by_type: dict[EventType, list[bytes]] = {}
    for data in messages:
        by_type.setdefault(codec.decode(data).type, []).append(data)
    for event_type, some in by_type.items():
        out[f"read.{event_type.value}.ours"] = best_ns_over(codec.decode, some, rounds)
        out[f"read.{event_type.value}.fastavro"] = best_ns_over(library, some, rounds)
    wanted = ClickHouseSink.columnar[EventType.CHUNK]
    chunk_header = MAGIC + next(
        fp for fp, w in writers.items() if w.type is EventType.CHUNK and w.parsed is readers[w.type]
    )

    def library_columns(data: bytes) -> object:
        # The same columns from fastavro's dicts: what the sink would do without the column reader.
        record = library(data)
        if data[:_HEADER] == chunk_header:
            for column, name in zip(lists, wanted, strict=True):
                column.append(record[name])  # type: ignore[index]
        return record

    best = float("inf")
    for _ in range(rounds):
        lists: list[list[Any]] = [[] for _ in wanted]
        started = time.thread_time_ns()
        for data in messages:
            library_columns(data)
        best = min(best, (time.thread_time_ns() - started) / len(messages))
    out["read.mix.fastavro_columns"] = best
    best = float("inf")
    for _ in range(rounds):
        decoder = codec.columns(ClickHouseSink.columnar)
        started = time.thread_time_ns()
        for data in messages:
            columns(data)
        best = min(best, (time.thread_time_ns() - started) / len(messages))
    out["read.mix.ours_columns"] = best
    out["read.mix.events"] = float(len(messages))
    return out


def partitioner_pairs(rounds: int, keys: int) -> dict[str, float]:
    ids = [capture.new_request_id().encode() for _ in range(keys)]
    theirs = DefaultPartitioner()
    partitions = [0, 1, 2]
    for key in ids:
        if partition_for(key, 3) != theirs(key, partitions, partitions):
            raise AssertionError("the two partitioners disagree")
    return {
        "partition.ours": best_ns_over(lambda k: partition_for(k, 3), ids, rounds),
        "partition.aiokafka": best_ns_over(
            lambda k: theirs(k, partitions, partitions), ids, rounds
        ),
    }


def _uuid7(random10: bytes) -> str:
    """``capture.new_request_id`` with the random bits given, to price only their source."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(random10)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    hex_ = f"{value:032x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


def request_id_pairs(rounds: int, iterations: int) -> dict[str, float]:
    return {
        "request_id.ours_pool": best_ns(capture.new_request_id, iterations, rounds),
        "request_id.os_urandom": best_ns(lambda: _uuid7(os.urandom(10)), iterations, rounds),
        "request_id.secrets": best_ns(lambda: _uuid7(secrets.token_bytes(10)), iterations, rounds),
        "request_id.uuid4_for_scale": best_ns(lambda: str(uuid.uuid4()), iterations, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--exchanges", type=int, default=2_000, help="loader traffic to decode")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        load_before = loadavg.read().split()[:3]
    results = {
        **writer_pairs(args.rounds, args.iterations),
        **reader_pairs(args.rounds, args.exchanges),
        **partitioner_pairs(args.rounds, args.iterations),
        **request_id_pairs(args.rounds, args.iterations),
    }
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        load_after = loadavg.read().split()[:3]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{stamp}, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(load_before)} -> {' '.join(load_after)}; thread CPU, best of {args.rounds}"
    )
    for name, ns in results.items():
        shown = f"{ns:9.0f}" if name.endswith(".events") else f"{ns / 1000:9.2f} µs"
        print(f"  {name:32s} {shown}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            payload = {"at": stamp, "load": [load_before, load_after], "ns": results}
            json.dump(payload, out, indent=2)


if __name__ == "__main__":
    main()
