"""Grep everything the pipeline stores for canary secrets: Kafka topics, ClickHouse, logs, files."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

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


class _LoopbackListener:
    """A TCP listener on a free loopback port, open for the ``async with`` block."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class Canary(_LoopbackListener):
    """A TCP listener on a second loopback port that counts every connection made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


async def raw_exchange(base_url: str, data: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send raw bytes to a server and return everything it answers until it closes."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    assert response.startswith(b"HTTP/1."), response[:200]
    return int(response.split(b" ", 2)[1])


class RawLineUpstream(_LoopbackListener):
    """An HTTP upstream on loopback that records each request line and head exactly as received
    (no HTTP library between the socket and the record) and answers a small JSON 200."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []
        self.heads: list[bytes] = []

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.lines.append(head.split(b"\r\n", 1)[0])
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                body = b'{"object":"ok"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
