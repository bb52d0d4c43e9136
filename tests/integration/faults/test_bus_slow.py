"""B3: a broker that stops answering (SIGSTOP) without closing connections -- the case where
aiokafka would hang a caller for ``request_timeout_ms`` -- must not slow any client down."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from deploy.local.kafka import KafkaBroker
from proxy.app import PUBLISHER
from tests.integration.conftest import ProxyFactory
from tests.integration.faults.oracle import wait_reconciled
from tests.integration.faults.traffic import Served, call

pytestmark = pytest.mark.slow

LAT_BUDGET_S = 0.5  # extra time per stream allowed on this shared machine


async def _streams(url: str, count: int) -> list[Served]:
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(
            *(call(session, url, stream=True, words=15, delay_ms=100) for _ in range(count))
        )


async def test_silent_broker_does_not_stall_clients(
    pipeline_factory: ProxyFactory, kafka_broker: KafkaBroker
) -> None:
    p = await pipeline_factory(kafka_timeout_s=1.0)
    baseline = await _streams(p.proxy_url, 4)

    await asyncio.to_thread(kafka_broker.pause)
    try:
        during = await _streams(p.proxy_url, 4)  # ~1.6 s each: past the 1 s send deadline
        during += await _streams(p.proxy_url, 4)
        stats = p.proxy_app[PUBLISHER].stats
        assert stats.spills >= 1  # the publisher noticed and journaled
        assert stats.journaled > 0
    finally:
        await asyncio.to_thread(kafka_broker.resume)

    slowest_before = max(s.seconds for s in baseline)
    for s in during:
        assert s.status == 200
        assert s.body.endswith(b"data: [DONE]\n\n")
        assert s.ttfb_s < max(b.ttfb_s for b in baseline) + LAT_BUDGET_S
        assert s.seconds < slowest_before + LAT_BUDGET_S
    result = await wait_reconciled(p.clickhouse, [s.request_id for s in [*baseline, *during]])
    print(f"after the pause: {result}; raw dup rows {result.dup_rows_raw}")
    assert result.exact, result
