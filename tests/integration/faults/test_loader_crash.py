"""K1: the loader SIGKILLed before, during and after an insert; K2: a rebalance mid-stream.

K1 runs the loader as a real process (``python -m deploy.cli load-clickhouse``) with its own
embedded ClickHouse, stopped exactly at a window by the documented fault point
(``LOGORHYTHMS_FAULT_POINT``), killed there, and finally run to completion; the oracle reads
through the loader's own read-only SQL endpoint.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from deploy.local.kafka import free_ports
from tests.integration.conftest import Pipeline
from tests.integration.faults.oracle import Query, wait_reconciled
from tests.integration.faults.processes import Service, spawn, wait_for_log
from tests.integration.faults.traffic import SteadyTraffic, burst, eventually, wait_http_ok

pytestmark = pytest.mark.slow

WINDOWS = ("before_insert", "mid_insert", "before_commit")  # W1, W2, W3


def _sql_query(url: str) -> Query:
    """The oracle's query function, over the loader's read-only SQL endpoint."""

    async def run(sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        ids = ",".join(f"'{i}'" for i in parameters["ids"] if i.replace("-", "").isalnum())
        sql = sql.replace("{ids:Array(String)}", f"[{ids}]::Array(String)")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/sql", params={"format": "TabSeparated"}, data=sql) as response,
        ):
            text = await response.text()
            assert response.status == 200, text
        return [tuple(int(v) for v in line.split("\t")) for line in text.splitlines()]

    return run


async def test_loader_killed_in_every_window_loses_and_doubles_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    served = [
        *await burst(pipeline.proxy_url, 20),
        *await burst(pipeline.proxy_url, 10, stream=True, words=8),
    ]
    ids = [s.request_id for s in served]
    sql_port = free_ports(1)[0]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap,
        "LOGORHYTHMS_TOPIC": pipeline.topic,
        "CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "LOGORHYTHMS_SQL_PORT": str(sql_port),
        "LOGORHYTHMS_BATCH_MAX_AGE_S": "0.3",
    }
    services: list[Service] = []
    try:
        for number, window in enumerate(WINDOWS):
            # A group per window, so no restart waits for a killed member's session to expire;
            # none of them commits anything, so each starts where a restart would: the last
            # commit (none). The final run reuses W3's group, the case that matters most.
            loader = spawn(
                "load-clickhouse",
                {**env, "LOGORHYTHMS_CLICKHOUSE_GROUP": f"{pipeline.topic}-k1-{number}",
                 "LOGORHYTHMS_FAULT_POINT": window},
                tmp_path / f"{window}.log",
            )  # fmt: skip
            services.append(loader)
            await asyncio.to_thread(wait_for_log, loader, f"FAULT-POINT {window}")
            loader.signal(signal.SIGKILL)
            await asyncio.to_thread(loader.wait, 10)

        final = spawn(
            "load-clickhouse",
            {**env, "LOGORHYTHMS_CLICKHOUSE_GROUP": f"{pipeline.topic}-k1-{len(WINDOWS) - 1}"},
            tmp_path / "final.log",
        )
        services.append(final)
        url = f"http://127.0.0.1:{sql_port}"
        await wait_http_ok(f"{url}/healthz", timeout_s=60)
        result = await wait_reconciled(_sql_query(url), ids, timeout_s=60)
    finally:
        for service in services:
            service.stop()
    print(f"after kills at {', '.join(WINDOWS)}: {result}; raw dup rows {result.dup_rows_raw}")
    assert result.exact, result


async def test_rebalance_mid_stream_loses_nothing(pipeline: Pipeline, clickhouse_url: str) -> None:
    """K2: a second loader joins the group mid-stream, then the first one leaves."""
    settings = ConsumerSettings(
        kafka_bootstrap_servers=pipeline.bootstrap,
        topic=pipeline.topic,
        group_id=f"{pipeline.topic}-clickhouse",  # the pipeline's own group
        deadletter_topic=f"{pipeline.topic}.deadletter",
        batch_max_age_s=0.2,
    )
    second = Runner(settings=settings, sink=ClickHouseSink(ClickHouse(clickhouse_url)))
    traffic = SteadyTraffic(pipeline.proxy_url)
    traffic_task = asyncio.create_task(traffic.run())
    second_task = asyncio.create_task(second.run())
    try:
        await eventually(lambda: pipeline.runner.stats.records > 0, what="first loader busy")
        await asyncio.wait_for(second.ready.wait(), 60)
        # Traffic keeps flowing until the rebalance has handed partitions to the second loader.
        await eventually(
            lambda: second.stats.records > 0, what="second loader got partitions", timeout_s=60
        )
        pipeline.runner.request_stop()  # the first leaves mid-stream (its partitions move)
        rounds = traffic.rounds
        await eventually(lambda: traffic.rounds >= rounds + 3, what="traffic after the leave")
        traffic.stop.set()
        served = await traffic_task
        result = await wait_reconciled(pipeline.clickhouse, [s.request_id for s in served])
    finally:
        traffic.stop.set()
        second.request_stop()
        await asyncio.wait_for(second_task, 30)
        await asyncio.gather(traffic_task, return_exceptions=True)
    print(f"after rebalances: {result}; raw dup rows {result.dup_rows_raw}")
    assert result.exact, result
