"""The producer knobs ops may turn (linger, compression) change how events travel, never what
arrives: every exchange is still captured exactly once."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from proxy.app import PUBLISHER
from tests.integration.conftest import ProxyFactory
from tests.integration.faults.oracle import wait_reconciled
from tests.integration.faults.traffic import call


@pytest.mark.parametrize(("compression", "linger_ms"), [("none", 0), ("gzip", 50), ("lz4", 20)])
async def test_every_compression_and_linger_delivers_every_event(
    pipeline_factory: ProxyFactory, compression: str, linger_ms: int
) -> None:
    p = await pipeline_factory(kafka_compression=compression, kafka_linger_ms=linger_ms)
    async with aiohttp.ClientSession() as session:
        served = await asyncio.gather(
            *(call(session, p.proxy_url, stream=stream, words=5) for stream in (True, False))
        )
    assert [s.status for s in served] == [200, 200]
    result = await wait_reconciled(p.clickhouse, [s.request_id for s in served])
    assert result.exact, result
    stats = p.proxy_app[PUBLISHER].stats
    assert stats.delivered == stats.published
    assert stats.journaled == 0
