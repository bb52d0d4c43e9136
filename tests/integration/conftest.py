"""A whole pipeline in the test process: fake upstream → proxy → real Kafka → loader → chdb."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from deploy.local.fake_upstream import RECEIVED, ReceivedRequest, create_fake_upstream
from deploy.local.kafka import create_topic
from proxy.app import create_app, make_runner
from proxy.settings import Provider, ProxySettings, Secret
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

SERVICE_KEY = "sk-service-canary-7f3a9c1e5b"  # the provider key the proxy injects


async def serve(
    app: web.Application, runner_factory: Callable[..., web.AppRunner] = web.AppRunner
) -> tuple[web.AppRunner, str]:
    """Run an aiohttp app on a free loopback port; returns its runner and base URL.

    The proxy is served with ``proxy.app.make_runner``, as in production (proxy/protocol.py).
    """
    runner = runner_factory(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@dataclass
class FakeUpstream:
    url: str
    app: web.Application

    @property
    def received(self) -> list[ReceivedRequest]:
        return self.app[RECEIVED]


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    app = create_fake_upstream()
    runner, url = await serve(app)
    yield FakeUpstream(url, app)
    await runner.cleanup()


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One embedded engine per process: chdb can open only one directory at a time.
    path: Path = tmp_path_factory.mktemp("clickhouse")
    return f"chdb://{path}"


@dataclass
class Pipeline:
    proxy_url: str
    topic: str
    bootstrap: str
    clickhouse: ClickHouse
    upstream: FakeUpstream
    proxy_app: web.Application
    runner: Runner
    extra: dict[str, Any] = field(default_factory=dict)

    async def wait_for(
        self,
        sql: str,
        parameters: dict[str, Any],
        ready: Callable[[list[tuple[Any, ...]]], bool],
        *,
        timeout_s: float = 20.0,
        binary_columns: tuple[str, ...] = (),
    ) -> list[tuple[Any, ...]]:
        """Poll a query until ``ready(rows)`` or fail with the last rows seen."""
        deadline = time.monotonic() + timeout_s
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            rows = await self.clickhouse.rows(sql, parameters, binary_columns=binary_columns)
            if ready(rows):
                return rows
            await asyncio.sleep(0.1)
        pytest.fail(f"timed out after {timeout_s}s waiting on {sql!r}; last rows: {rows!r}")

    async def exchange(self, request_id: str, columns: str = "*") -> dict[str, Any]:
        rows = await self.wait_for(
            f"SELECT {columns} FROM exchanges FINAL WHERE request_id = {{id:String}}",  # noqa: S608
            {"id": request_id},
            lambda rows: len(rows) == 1,
        )
        names = await self.clickhouse.rows(
            "SELECT name FROM system.columns WHERE table = 'exchanges' "
            "AND database = currentDatabase() ORDER BY position"
        )
        if columns == "*":
            return dict(
                zip([n[0] for n in names if n[0] != "prompt_group_hash"], rows[0], strict=False)
            )
        return dict(zip([c.strip() for c in columns.split(",")], rows[0], strict=True))

    async def records(self, count: int, *, timeout_s: float = 30.0) -> list[Any]:
        """The first ``count`` records of the topic, as a separate reader sees them."""
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            records: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while len(records) < count:
                assert time.monotonic() < deadline, f"only {len(records)} of {count} records"
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()


ProxyFactory = Callable[..., Awaitable[Pipeline]]


@pytest.fixture
async def pipeline_factory(
    kafka_bootstrap: str,
    kafka_replication_factor: int,
    unique_topic: str,
    fake_upstream: FakeUpstream,
    clickhouse_url: str,
    tmp_path: Path,
) -> AsyncIterator[ProxyFactory]:
    """Builds a pipeline; keyword arguments override ProxySettings fields (providers too), and
    ``consumer`` overrides ConsumerSettings fields of its loader.

    Each proxy gets its own journal directory under the test's tmp_path unless one is given.
    """
    await create_topic(
        kafka_bootstrap,
        unique_topic,
        partitions=3,
        replication_factor=kafka_replication_factor,
        configs={"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)},
    )
    stack = contextlib.AsyncExitStack()
    built = 0

    async def build(consumer: Mapping[str, Any] | None = None, **overrides: Any) -> Pipeline:
        nonlocal built
        built += 1
        values: dict[str, Any] = {
            "journal_dir": str(tmp_path / f"journal-{built}"),
            "providers": (
                Provider(
                    name="openai",
                    base_url=f"{fake_upstream.url}/v1",
                    dialect="openai",
                    api_key=Secret(SERVICE_KEY),
                ),
            ),
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic": unique_topic,
            "fingerprint_key": Secret("test-fingerprint-key"),
        }
        if os.environ.get("LOGORHYTHMS_PRODUCER"):
            # The fault tests run with either producer (tests/README.md, "The producer process").
            values["producer"] = os.environ["LOGORHYTHMS_PRODUCER"]
        settings = ProxySettings(**{**values, **overrides})
        app = create_app(settings)
        proxy_runner, proxy_url = await serve(app, make_runner)
        stack.push_async_callback(proxy_runner.cleanup)
        clickhouse = ClickHouse(clickhouse_url)
        await clickhouse.start()
        stack.push_async_callback(clickhouse.stop)
        runner = Runner(
            settings=ConsumerSettings(
                kafka_bootstrap_servers=kafka_bootstrap,
                topic=unique_topic,
                group_id=f"{unique_topic}-clickhouse",
                deadletter_topic=f"{unique_topic}.deadletter",
                batch_max_age_s=0.2,
                **(consumer or {}),
            ),
            sink=ClickHouseSink(ClickHouse(clickhouse_url)),
        )
        task = asyncio.create_task(runner.run())

        async def stop_runner() -> None:
            runner.request_stop()
            await asyncio.wait_for(task, 30)

        stack.push_async_callback(stop_runner)
        await asyncio.wait_for(runner.ready.wait(), 60)
        return Pipeline(
            proxy_url, unique_topic, kafka_bootstrap, clickhouse, fake_upstream, app, runner
        )

    yield build
    await stack.aclose()


@pytest.fixture
async def pipeline(pipeline_factory: ProxyFactory) -> Pipeline:
    return await pipeline_factory()
