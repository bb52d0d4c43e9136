"""Fixtures for the ClickHouse model tests: a private database per test, loaders on a topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from deploy.local.kafka import create_topic


@pytest.fixture
async def database_url(clickhouse_url: str) -> str:
    """A ClickHouse URL whose default database is new and empty: exact counts, no neighbours.

    The engine directory is the session's (chdb opens one per process); only the database differs.
    """
    name = f"t_{uuid.uuid4().hex[:12]}"
    async with ClickHouse(clickhouse_url) as admin:
        await admin.command(f"CREATE DATABASE {name}")
    return f"{clickhouse_url}?database={name}"


@pytest.fixture
async def clickhouse(database_url: str) -> AsyncIterator[ClickHouse]:
    async with ClickHouse(database_url) as client:
        yield client


@dataclass
class Loader:
    """A running loader (runner + ClickHouse sink) consuming one topic as one group."""

    runner: Runner
    sink: ClickHouseSink
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.runner.request_stop()
        await asyncio.wait_for(self.task, 30)

    async def wait_records(self, count: int, *, timeout_s: float = 30.0) -> None:
        """Wait until the runner has delivered and committed ``count`` records in total."""
        deadline = time.monotonic() + timeout_s
        while self.runner.stats.records < count:
            if self.task.done():
                self.task.result()  # raises what stopped it
                pytest.fail("the loader stopped before delivering its records")
            if time.monotonic() > deadline:
                pytest.fail(f"loader delivered {self.runner.stats.records} of {count} records")
            await asyncio.sleep(0.05)


LoaderFactory = Callable[..., Any]


@pytest.fixture
async def topic(kafka_bootstrap: str, unique_topic: str) -> str:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    return unique_topic


@pytest.fixture
async def start_loader(
    kafka_bootstrap: str, topic: str, database_url: str
) -> AsyncIterator[LoaderFactory]:
    """Starts loaders on ``topic``; ``group`` defaults to one group for the whole test."""
    loaders: list[Loader] = []

    async def start(*, group: str = "loader", batch_max_records: int = 20_000) -> Loader:
        sink = ClickHouseSink(ClickHouse(database_url))
        runner = Runner(
            settings=ConsumerSettings(
                kafka_bootstrap_servers=kafka_bootstrap,
                topic=topic,
                group_id=f"{topic}-{group}",
                deadletter_topic=f"{topic}.deadletter",
                batch_max_age_s=0.1,
                batch_max_records=batch_max_records,
            ),
            sink=sink,
        )
        task = asyncio.create_task(runner.run())
        ready = asyncio.create_task(runner.ready.wait())
        await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()
        loader = Loader(runner, sink, task)
        loaders.append(loader)
        return loader

    yield start
    for loader in loaders:
        if not loader.task.done():
            await loader.stop()


async def read_deadletters(
    bootstrap: str, topic: str, count: int, *, timeout_s: float = 20.0
) -> list[tuple[bytes, dict[str, bytes]]]:
    """The first ``count`` dead-letter records of ``topic``: (value, headers)."""
    consumer = AIOKafkaConsumer(
        f"{topic}.deadletter", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found += [(r.value or b"", dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found
