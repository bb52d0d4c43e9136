"""SIGKILL of the proxy under load, with Kafka healthy: served means captured.

The proxy runs as a real process on one journal directory; clients keep it busy with plain and
streamed requests; it is SIGKILLed at random moments and started again, 20 times, and after each
restart every exchange begun so far must be in ClickHouse exactly once. At the end: every exchange
a client saw complete must be a row in ``exchanges`` (and not a ``proxy_died`` one), every
exchange whose response had begun is a row that either completed or says ``proxy_died``, none is
missing, and FINAL shows no duplicate (the restart replays records Kafka may already hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from proxy.exchange import REQUEST_ID_HEADER
from tests.integration.conftest import Pipeline
from tests.integration.faults.oracle import wait_reconciled
from tests.integration.faults.processes import Service, start_proxy
from tests.integration.faults.traffic import eventually, get_json

pytestmark = pytest.mark.slow

KILLS = 20


async def _client(
    url: str, stream: bool, begun: set[str], complete: set[str], stop: asyncio.Event
) -> None:
    """Requests one after another until the proxy dies under it (or ``stop``)."""
    body = orjson.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a b c d e f"}],
         "stream": stream}
    )  # fmt: skip
    headers = {"Content-Type": "application/json", "x-fake-delay-ms": "25" if stream else "5"}
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.post(
                    f"{url}/v1/chat/completions", data=body, headers=headers
                ) as response:
                    request_id = response.headers[REQUEST_ID_HEADER]
                    begun.add(request_id)
                    await response.read()  # the whole body, to its end
                    complete.add(request_id)
            except aiohttp.ClientError:
                return  # the proxy is gone


async def test_sigkill_under_load_loses_no_served_exchange(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    rng = random.Random(20261202)
    begun: set[str] = set()
    complete: set[str] = set()
    services: list[Service] = []
    ended_at_start = 0
    try:
        for round_ in range(KILLS + 1):
            proxy = await start_proxy(
                upstream_url=pipeline.upstream.url,
                bootstrap=pipeline.bootstrap,
                topic=pipeline.topic,
                journal_dir=tmp_path / "journal",
                log_path=tmp_path / f"proxy-{round_}.log",
            )
            services.append(proxy)
            # A restart ends what the killed run left open: counted once its journal is read.
            _, stats = await get_json(f"{proxy.url}/statsz")
            ended_at_start += int(stats["exchanges_ended_proxy_died"])  # type: ignore[call-overload]
            if round_:
                # After each restart: everything so far is in ClickHouse, once, cut ones ended.
                so_far = await wait_reconciled(pipeline.clickhouse, begun, timeout_s=60)
                assert so_far.exact, (round_, so_far)
            if round_ == KILLS:
                break  # the last start only recovers the last kill
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_client(proxy.url, i % 2 == 0, begun, complete, stop))
                for i in range(8)
            ]
            before = len(complete)
            await eventually(lambda b=before: len(complete) > b, what="traffic flowing")
            await asyncio.sleep(rng.uniform(0.05, 1.0))  # the random moment of the kill
            proxy.signal(signal.SIGKILL)
            await asyncio.to_thread(proxy.wait, 10)
            stop.set()
            for client in clients:
                with contextlib.suppress(asyncio.CancelledError):
                    await client

        cut = begun - complete
        print(f"{len(complete)} complete, {len(cut)} cut by {KILLS} kills; "
              f"{ended_at_start} ended as proxy_died at restarts")  # fmt: skip
        assert cut, "no kill caught an exchange in flight: the test proves nothing"
        served = await wait_reconciled(pipeline.clickhouse, complete, timeout_s=90)
        print(f"complete: {served}")
        assert served.exact, served
        in_flight = await wait_reconciled(pipeline.clickhouse, cut, timeout_s=30)
        print(f"in flight: {in_flight}")
        assert in_flight.exact, in_flight  # a row each, chunks 1..n, no duplicate after FINAL

        outcomes = dict(
            await pipeline.clickhouse.rows(
                "SELECT outcome, count() FROM exchanges FINAL "
                "WHERE request_id IN {ids:Array(String)} GROUP BY outcome",
                {"ids": list(complete)},
            )
        )
        assert set(outcomes) == {"ok"}, outcomes  # what a client saw end is never proxy_died
        outcomes = dict(
            await pipeline.clickhouse.rows(
                "SELECT outcome, count() FROM exchanges FINAL "
                "WHERE request_id IN {ids:Array(String)} GROUP BY outcome",
                {"ids": list(cut)},
            )
        )
        print(f"outcomes of the cut exchanges: {outcomes}")
        assert set(outcomes) <= {"ok", "proxy_died"}, outcomes
        assert outcomes.get("proxy_died", 0) > 0
    finally:
        for service in services:
            service.stop()
