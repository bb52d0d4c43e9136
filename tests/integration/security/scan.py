"""Grep everything the pipeline stores for canary secrets: Kafka topics, ClickHouse, logs, files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from consumers.clickhouse.client import ClickHouse


async def topic_bytes(bootstrap: str, topic: str) -> bytes:
    """Every key, value and header of every record on ``topic`` (b"" if it does not exist)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        if topic not in await probe.topics():
            return b""
    finally:
        await probe.stop()
    # No group: the consumer is assigned every partition of the topic by itself.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        assigned = list(consumer.assignment())
        assert assigned, f"no partitions of {topic} were assigned within 10 s"
        await consumer.seek_to_beginning(*assigned)
        end = await consumer.end_offsets(assigned)
        out = bytearray()
        while [tp for tp in assigned if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    out += (record.key or b"") + (record.value or b"")
                    for name, value in record.headers:
                        out += name.encode() + value
        return bytes(out)
    finally:
        await consumer.stop()


async def clickhouse_bytes(clickhouse: ClickHouse) -> dict[str, bytes]:
    """Every row of every table of the current database, as TSV, by table name."""
    tables = await clickhouse.rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine NOT IN ('View', 'MaterializedView')"
    )
    out = {}
    for (name,) in tables:
        data = await clickhouse.raw(f"SELECT * FROM `{name}`", fmt="TSVRaw")  # noqa: S608
        out[name] = data.encode() if isinstance(data, str) else bytes(data)  # chdb: str if empty
    return out


def directory_bytes(path: Path | None) -> bytes:
    """All bytes of all files under ``path`` (a journal directory, say); b"" when it is absent."""
    if path is None or not path.exists():
        return b""
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def leaks(secrets: Iterable[str], places: dict[str, bytes]) -> list[str]:
    """``secret in place`` for every pair found: the list must be empty."""
    wrong = {k: type(v).__name__ for k, v in places.items() if not isinstance(v, bytes)}
    assert not wrong, f"places must be bytes: {wrong}"
    return [
        f"{secret!r} found in {where}"
        for where, data in places.items()
        for secret in secrets
        if secret.encode() in data
    ]


async def wait_ready(http: aiohttp.ClientSession, base_url: str, timeout_s: float = 30.0) -> None:
    """Poll a proxy's /readyz until its Kafka producer is connected."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with http.get(f"{base_url}/readyz") as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.05)
    pytest.fail(f"proxy at {base_url} did not become ready within {timeout_s}s")
