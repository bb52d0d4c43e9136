"""The loader process as `make up` runs it: loading and serving read-only SQL side by side."""

# ruff: noqa: S608 (queries are built from request ids this test generated)

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from consumers.clickhouse.loader import run_loader
from consumers.settings import ConsumerSettings, LoaderSettings, SqlSettings
from deploy.local.kafka import create_topic
from proxy import capture
from schemas import Codec, EventType


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _exchange_events(request_id: str, text: str) -> list[tuple[EventType, dict[str, object]]]:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
    answer = orjson.dumps({"choices": [{"index": 0, "message": {"content": text}}]})
    request = capture.request_event(capture.CapturedRequest(
        request_id=request_id, received_at_us=time.time_ns() // 1000, method="POST",
        path="/v1/chat/completions", query="", headers=[], peer_ip="127.0.0.1",
        forwarded_for=None, client_ip="127.0.0.1", client_key_fingerprint=None, body=body,
        max_body_in_event=1 << 20, model_requested="m", stream=False,
        endpoint="/v1/chat/completions", dialect="openai", provider="openai", upstream_url="u",
        model_sent="m", proxy_instance="test",
    ))  # fmt: skip
    chunk = capture.chunk_event(
        request_id=request_id, seq=1, offset_ns=1000, data=answer, max_bytes=1 << 20,
        delivered=True,
    )  # fmt: skip
    completed = capture.completed_event(
        request_id=request_id, status=200, outcome="ok", error_type=None, error_message=None,
        upstream_status=200, response_headers={}, ttfb_ns=1000, duration_ns=2000,
        bytes_in=len(body), bytes_out=len(answer), chunk_count=1,
    )  # fmt: skip
    return [
        (EventType.REQUEST, request),
        (EventType.CHUNK, chunk),
        (EventType.COMPLETED, completed),
    ]


async def _publish(bootstrap: str, topic: str, request_id: str, text: str) -> None:
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event_type, record in _exchange_events(request_id, text):
            await producer.send_and_wait(
                topic, codec.encode(event_type, record), key=request_id.encode()
            )
    finally:
        await producer.stop()


async def _sql(
    session: aiohttp.ClientSession, url: str, query: str, fmt: str = "TSV"
) -> tuple[int, str]:
    async with session.post(f"{url}/sql", data=query, params={"format": fmt}) as response:
        return response.status, await response.text()


async def _wait_for_text(
    session: aiohttp.ClientSession, url: str, query: str, expected: str
) -> str:
    deadline = time.monotonic() + 20
    body = ""
    while time.monotonic() < deadline:
        try:
            status, body = await _sql(session, url, query)
        except aiohttp.ClientConnectorError:
            status = 0  # the loader is still starting its SQL endpoint
        if status == 200 and expected in body:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{expected!r} never appeared; last answer: {body!r}")


async def test_loader_keeps_loading_while_serving_read_only_sql(
    kafka_bootstrap: str, unique_topic: str, clickhouse_url: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic)
    port = _free_port()
    settings = LoaderSettings(
        consumer=ConsumerSettings(
            kafka_bootstrap_servers=kafka_bootstrap, topic=unique_topic,
            group_id=f"{unique_topic}-loader", deadletter_topic=f"{unique_topic}.dlq",
            batch_max_age_s=0.2,
        ),
        clickhouse_url=clickhouse_url,
        sql=SqlSettings(port=port),
    )  # fmt: skip
    stop = asyncio.Event()
    loader = asyncio.create_task(run_loader(settings, stop=stop))
    url = f"http://127.0.0.1:{port}"
    first, second = capture.new_request_id(), capture.new_request_id()
    try:
        async with aiohttp.ClientSession() as session:
            await _publish(kafka_bootstrap, unique_topic, first, "first one")
            query = (
                "SELECT request_id, response_text FROM exchanges FINAL "
                "WHERE request_id IN ('{}', '{}')"
            )
            await _wait_for_text(session, url, query.format(first, second), "first one")

            # A write through the SQL endpoint is refused, in ClickHouse's words and status ...
            status, body = await _sql(
                session, url, f"INSERT INTO exchanges (request_id) VALUES ('{second}')"
            )
            assert status == 500
            assert body.startswith("Code: 164. DB::Exception:")
            assert "(READONLY)" in body
            # ... and the analysts' read-only session does not leak into the loader's writes.
            await _publish(kafka_bootstrap, unique_topic, second, "second one")
            rows = await _wait_for_text(session, url, query.format(first, second), "second one")
            assert sorted(line.split("\t")[1] for line in rows.strip().splitlines()) == [
                "first one",
                "second one",
            ]
            status, body = await _sql(
                session,
                url,
                f"SELECT count() FROM exchanges WHERE request_id = '{first}'",
                "JSONEachRow",
            )
            assert status == 200
            assert orjson.loads(body) == {"count()": 1}
            status, body = await _sql(session, url, "SELECT nonsense FROM nowhere")
            assert status == 404  # UNKNOWN_TABLE, as ClickHouse answers it
            assert "nowhere" in body
    finally:
        stop.set()
        await asyncio.wait_for(loader, 30)
