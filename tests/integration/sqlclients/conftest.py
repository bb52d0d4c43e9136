"""A loader serving the SQL endpoint over captured exchanges, for analysts' real clients.

The clients are the ones analysts already have, run unchanged: clickhouse-connect (in a thread,
since it blocks), the official Node.js client and a browser driver (tests/clients/node), and the
ClickHouse JDBC driver (tests/clients/jdbc). `make client-tools` installs them; a missing one
fails the test with that instruction, never skips it.
"""

# ruff: noqa: S608 (queries are built from request ids these fixtures generated)

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from consumers.clickhouse.loader import run_loader
from consumers.settings import ConsumerSettings, LoaderSettings, Secret, SqlSettings
from deploy.local.kafka import create_topic
from proxy import capture
from schemas import Codec
from tests.integration.test_loader_sql import _exchange_events, _free_port

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
NODE_DIR = CLIENTS / "node"
JDBC_SOURCE = CLIENTS / "jdbc" / "JdbcQuery.java"
JDBC_JARS = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "logorhythms" / "jdbc"
USER, PASSWORD = "analyst", "correct-horse-battery"
EXCHANGES = 5


@dataclass(frozen=True)
class Endpoint:
    url: str
    port: int
    request_ids: tuple[str, ...]
    user: str | None
    password: str | None


def require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} is not installed ({path} is missing): run `make client-tools`")
    return path


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not on PATH: run `make client-tools`")
    return found


async def run_tool(*args: str, cwd: Path | None = None, timeout_s: float = 120) -> str:
    """Run a client program without blocking the event loop that serves the endpoint."""
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode in (0, 3), (
        f"{args[0]} exited {process.returncode}:\n{stderr.decode(errors='replace')}"
    )
    return stdout.decode()


async def _publish(bootstrap: str, topic: str, count: int) -> tuple[str, ...]:
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    ids = []
    try:
        for n in range(count):
            request_id = capture.new_request_id()
            for event_type, record in _exchange_events(request_id, f"client question {n}"):
                await producer.send(
                    topic, codec.encode(event_type, record), key=request_id.encode()
                )
            ids.append(request_id)
        await producer.flush()
    finally:
        await producer.stop()
    return tuple(ids)


async def _wait_loaded(url: str, headers: dict[str, str], ids: tuple[str, ...]) -> None:
    quoted = ",".join(f"'{i}'" for i in ids)
    query = f"SELECT count() FROM exchanges FINAL WHERE request_id IN ({quoted})"
    deadline = time.monotonic() + 30
    body = ""
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(f"{url}/", data=query) as response:
                    body = await response.text()
                    if response.status == 200 and int(body) == len(ids):
                        return
            except aiohttp.ClientConnectorError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the loader did not load the exchanges within 30 s: {body!r}")


async def _serve(
    bootstrap: str, topic: str, clickhouse_url: str, *, password: str | None
) -> AsyncIterator[Endpoint]:
    await create_topic(bootstrap, topic)
    port = _free_port()
    settings = LoaderSettings(
        consumer=ConsumerSettings(
            kafka_bootstrap_servers=bootstrap, topic=topic, group_id=f"{topic}-loader",
            deadletter_topic=f"{topic}.dlq", batch_max_age_s=0.2,
        ),
        clickhouse_url=clickhouse_url,
        sql=SqlSettings(
            port=port,
            user=USER if password else "default",
            password=Secret(password) if password else None,
        ),
    )  # fmt: skip
    stop = asyncio.Event()
    loader = asyncio.create_task(run_loader(settings, stop=stop))
    try:
        ids = await _publish(bootstrap, topic, EXCHANGES)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": aiohttp.encode_basic_auth(USER, password)} if password else {}
        await _wait_loaded(url, headers, ids)
        yield Endpoint(url, port, ids, USER if password else None, password)
    finally:
        stop.set()
        await asyncio.wait_for(loader, 30)


@pytest.fixture
async def endpoint(
    kafka_bootstrap: str, unique_topic: str, clickhouse_url: str
) -> AsyncIterator[Endpoint]:
    """The endpoint as `make up` runs it: loopback, no password."""
    async for served in _serve(kafka_bootstrap, unique_topic, clickhouse_url, password=None):
        yield served


@pytest.fixture
async def guarded_endpoint(
    kafka_bootstrap: str, unique_topic: str, clickhouse_url: str
) -> AsyncIterator[Endpoint]:
    """The endpoint with a user and password, as when it is bound beyond loopback."""
    async for served in _serve(kafka_bootstrap, unique_topic, clickhouse_url, password=PASSWORD):
        yield served
