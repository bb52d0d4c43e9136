"""Graceful shutdown and crashes of the proxy as a real process (B4, B8, SIGTERM under load).

The proxy runs as ``python -m deploy.cli proxy``; the in-process loader of the ``pipeline``
fixture takes the topic into ClickHouse, and the oracle compares.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from deploy.local.kafka import KafkaBroker
from proxy.exchange import REQUEST_ID_HEADER
from tests.integration.conftest import Pipeline
from tests.integration.faults.oracle import wait_reconciled
from tests.integration.faults.processes import Service, start_proxy
from tests.integration.faults.traffic import burst, call, eventually, get_json

pytestmark = pytest.mark.slow


async def _proxy(p: Pipeline, tmp_path: Path, name: str, **env: str) -> Service:
    return await start_proxy(
        upstream_url=p.upstream.url,
        bootstrap=p.bootstrap,
        topic=p.topic,
        journal_dir=tmp_path / "journal",
        log_path=tmp_path / f"{name}.log",
        **env,
    )


async def test_sigterm_mid_stream_finishes_streams_and_loses_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    proxy = await _proxy(pipeline, tmp_path, "proxy", LOGORHYTHMS_SHUTDOWN_TIMEOUT_S="20")
    try:
        async with aiohttp.ClientSession() as session:
            streams = [
                asyncio.create_task(call(session, proxy.url, stream=True, words=50, delay_ms=150))
                for _ in range(10)
            ]
            await eventually(
                lambda: len(pipeline.upstream.received) >= 10, what="all streams started"
            )
            proxy.signal(signal.SIGTERM)
            signalled = time.monotonic()

            # New connections are refused while the streams are still running. (A fresh
            # connection per probe: a pooled keep-alive one would not test the listener.)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as probe:
                while True:
                    try:
                        await call(probe, proxy.url)
                    except aiohttp.ClientConnectionError:
                        break
                    assert time.monotonic() - signalled < 6, "still accepting after SIGTERM"
                    await asyncio.sleep(0.05)
            refused_while_streaming = not all(s.done() for s in streams)

            served = await asyncio.gather(*streams)
        code = await asyncio.to_thread(proxy.wait, 30)
        took = time.monotonic() - signalled
    finally:
        proxy.stop()
    assert code == 0, proxy.log()[-3000:]
    assert refused_while_streaming  # the listener closed long before the ~8 s streams ended
    assert all(s.status == 200 and s.body.endswith(b"data: [DONE]\n\n") for s in served)
    print(f"SIGTERM to exit: {took:.1f}s")
    result = await wait_reconciled(pipeline.clickhouse, [s.request_id for s in served])
    assert result.exact, result


async def _stream_until_killed(url: str, ids: list[str]) -> None:
    """A long stream whose request id we keep even though the proxy dies under it."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(
                f"{url}/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "a b c d e f g h"}],
                      "stream": True},
                headers={"x-fake-delay-ms": "200", "x-fake-chunks": "100"},
            ) as response:  # fmt: skip
                ids.append(response.headers[REQUEST_ID_HEADER])
                async for _ in response.content.iter_any():
                    pass
        except aiohttp.ClientError:
            pass  # the reset B8 says is unavoidable


async def _next_fsync(url: str) -> None:
    """Wait until the proxy's journal has been fsynced once more (its counter moved)."""
    _, stats = await get_json(f"{url}/statsz")

    async def moved() -> bool:
        return (await get_json(f"{url}/statsz"))[1]["journal_fsyncs"] != stats["journal_fsyncs"]

    await eventually(moved, what="one more journal fsync", timeout_s=5)


async def test_crash_and_shutdown_during_kafka_outage_lose_nothing_journaled(
    pipeline: Pipeline, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    fast = {
        "LOGORHYTHMS_KAFKA_TIMEOUT_S": "2",
        "LOGORHYTHMS_PUBLISH_SHUTDOWN_TIMEOUT_S": "2",
        "LOGORHYTHMS_SHUTDOWN_TIMEOUT_S": "3",
        "LOGORHYTHMS_JOURNAL_FSYNC_MS": "100",
    }
    await asyncio.to_thread(kafka_broker.kill)
    services: list[Service] = []
    try:
        # B8: SIGKILL with exchanges in flight while Kafka is down.
        first = await _proxy(pipeline, tmp_path, "first", **fast)
        services.append(first)
        before_kill = await burst(first.url, 20)
        in_flight: list[str] = []
        streams = [
            asyncio.create_task(_stream_until_killed(first.url, in_flight)) for _ in range(5)
        ]
        await eventually(lambda: len(in_flight) >= 5, what="all streams answered")
        await _next_fsync(first.url)  # what was published so far is on disk now
        first.signal(signal.SIGKILL)
        await asyncio.gather(*streams)

        # B4: a new proxy on the same journal, still no Kafka; SIGTERM must not hang on aiokafka.
        second = await _proxy(pipeline, tmp_path, "second", **fast)
        services.append(second)
        during = await burst(second.url, 20, stream=True, words=4)
        second.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = await asyncio.to_thread(second.wait, 30)
        shutdown_s = time.monotonic() - signalled
        assert code == 0, second.log()[-3000:]
        assert shutdown_s < 3 + 2 + 2 + 5, f"shutdown took {shutdown_s:.1f}s during the outage"

        await asyncio.to_thread(kafka_broker.restart)
        third = await _proxy(pipeline, tmp_path, "third", **fast)  # replays the journal
        services.append(third)
        served = [*before_kill, *during]
        assert all(s.status == 200 for s in served)
        result = await wait_reconciled(pipeline.clickhouse, [s.request_id for s in served])
        print(f"shutdown during outage {shutdown_s:.1f}s; {result}")
        assert result.exact, result

        # The exchanges SIGKILL cut: each is one row, ended by the restart as proxy_died.
        killed = await wait_reconciled(pipeline.clickhouse, in_flight, timeout_s=30)
        print(f"SIGKILLed in flight: {killed}")
        assert killed.exact, killed
        outcomes = await pipeline.clickhouse.rows(
            "SELECT DISTINCT outcome FROM exchanges FINAL WHERE request_id IN {ids:Array(String)}",
            {"ids": in_flight},
        )
        assert outcomes == [("proxy_died",)]
        _, stats = await get_json(f"{third.url}/statsz")
        assert stats["events_replayed"] > 0
        assert stats["journal_bytes"] == 0
    finally:
        for service in services:
            service.stop()
