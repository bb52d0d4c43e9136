"""A topic that refuses events as large as the proxy makes them (configured below
schemas/limits.py): the refused event is dropped, counted and its exchange named, and capture
goes on for everything after it instead of retrying the refused event forever."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from proxy.app import PUBLISHER, SETTINGS
from proxy.droplog import read_dropped
from proxy.exchange import REQUEST_ID_HEADER
from tests.integration.conftest import ProxyFactory
from tests.integration.faults.traffic import call, eventually

TOPIC_LIMIT = 1024 * 1024  # Kafka's own default


async def test_an_event_the_topic_refuses_for_its_size_is_dropped_and_capture_goes_on(
    pipeline_factory: ProxyFactory,
) -> None:
    p = await pipeline_factory(kafka_timeout_s=3.0)
    admin = AIOKafkaAdminClient(bootstrap_servers=p.bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, p.topic, configs={"max.message.bytes": str(TOPIC_LIMIT)}
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()
    async with aiohttp.ClientSession() as session:
        # Random base64: compressed, the event is still over the topic's limit.
        image = base64.b64encode(os.urandom(3 * TOPIC_LIMIT)).decode()
        async with session.post(
            f"{p.proxy_url}/v1/chat/completions",
            data=io.BytesIO(
                orjson.dumps(
                    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": image}]}
                )
            ),
            headers={"Content-Type": "application/json"},
        ) as response:
            await response.read()
            big_status, big_id = response.status, response.headers[REQUEST_ID_HEADER]
        after = await call(session, p.proxy_url)
    assert (big_status, after.status) == (200, 200)  # clients never notice

    # Everything after the refused event lands: the exchange behind it whole, and the big
    # exchange's own chunk and completed events.
    row = await p.exchange(after.request_id, "outcome, request_body_size")
    assert row["outcome"] == "ok"
    assert row["request_body_size"] > 0
    completed = await p.wait_for(
        "SELECT count() FROM completions_raw FINAL WHERE request_id = {id:String}",
        {"id": big_id},
        lambda rows: rows[0][0] == 1,
    )
    assert completed == [(1,)]
    [(requests,)] = await p.clickhouse.rows(
        "SELECT count() FROM requests_raw FINAL WHERE request_id = {id:String}",
        {"id": big_id},
    )
    assert requests == 0
    assert p.proxy_app[PUBLISHER].stats.dropped == 1
    journal_dir = Path(p.proxy_app[SETTINGS].journal_dir)
    await eventually(lambda: bool(read_dropped(journal_dir)), what="the drop log is written")
    assert read_dropped(journal_dir) == [big_id]
