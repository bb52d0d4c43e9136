"""End to end: the official OpenAI SDK → proxy → Kafka → loader → ClickHouse, checked in SQL."""

from __future__ import annotations

import httpx2 as httpx
import openai
import orjson
from aiokafka import AIOKafkaConsumer

from tests.integration.conftest import SERVICE_KEY, Pipeline

CLIENT_KEY = "sk-client-canary-2b8d0e4f6a"

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "name three primes"},
]


def _sdk(pipeline: Pipeline, sent: list[bytes]) -> openai.AsyncOpenAI:
    async def remember(request: httpx.Request) -> None:
        sent.append(request.content)

    return openai.AsyncOpenAI(
        base_url=f"{pipeline.proxy_url}/v1",
        api_key=CLIENT_KEY,
        http_client=httpx.AsyncClient(event_hooks={"request": [remember]}),
        max_retries=0,
    )


async def test_non_streaming_exchange_is_captured(pipeline: Pipeline) -> None:
    sent: list[bytes] = []
    async with _sdk(pipeline, sent) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            temperature=0.2,  # type: ignore[arg-type]
        )
        completion = raw.parse()
    request_id = raw.headers["x-logorhythms-request-id"]
    assert completion.choices[0].message.content == "Echo: name three primes"

    row = await pipeline.exchange(request_id)
    assert row["request_body"] == sent[0].decode()
    assert row["response_text"] == completion.choices[0].message.content
    assert row["status"] == 200
    assert row["outcome"] == "ok"
    assert row["stream"] is False
    assert row["model_requested"] == "gpt-4o-mini"
    assert row["system_prompt"] == "You are terse."
    assert row["messages"][1] == {"role": "user", "content": "name three primes"}
    assert row["temperature"] == 0.2
    assert row["prompt_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert row["usage_estimated"] is False
    assert row["ttfb_ms"] is not None
    assert row["ttfb_ms"] > 0
    assert row["duration_ms"] >= row["ttfb_ms"]
    assert row["user_agent"].startswith("AsyncOpenAI/Python")
    assert row["peer_ip"] == "127.0.0.1"

    # The upstream got the service's key, never the client's.
    forwarded = dict(pipeline.upstream.received[-1].headers)
    assert forwarded["Authorization"] == f"Bearer {SERVICE_KEY}"
    assert CLIENT_KEY not in str(pipeline.upstream.received[-1].headers)


async def test_streaming_exchange_is_captured_chunk_by_chunk(pipeline: Pipeline) -> None:
    sent: list[bytes] = []
    async with _sdk(pipeline, sent) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = []
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
    sdk_text = "".join(pieces)
    assert sdk_text == "Echo: name three primes"

    # The same request again with a raw client, to compare bytes received with bytes stored.
    received = bytearray()
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            f"{pipeline.proxy_url}/v1/chat/completions",
            content=sent[0],
            headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-logorhythms-request-id"]
        async for data in response.aiter_raw():
            received += data

    row = await pipeline.exchange(request_id)
    assert row["response_text"] == sdk_text
    assert row["stream"] is True
    assert row["request_body"] == sent[0].decode()
    assert row["completion_tokens"] == usage.completion_tokens  # type: ignore[union-attr]
    assert row["finish_reason"] == "stop"
    assert row["done_marker"] is True
    assert row["ttft_ms"] is not None
    assert row["ttft_ms"] >= row["ttfb_ms"]

    chunks = await pipeline.wait_for(
        "SELECT seq, offset_ns, data FROM chunks_raw FINAL WHERE request_id = {id:String} "
        "ORDER BY seq",
        {"id": request_id},
        lambda rows: len(rows) == row["chunk_count"],
        binary_columns=("data",),
    )
    assert [c[0] for c in chunks] == list(range(1, len(chunks) + 1))
    assert b"".join(c[2] for c in chunks) == bytes(received)
    offsets = [c[1] for c in chunks]
    assert offsets == sorted(offsets)


async def test_no_credential_reaches_kafka_or_clickhouse(pipeline: Pipeline) -> None:
    sent: list[bytes] = []
    async with _sdk(pipeline, sent) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
    request_id = raw.headers["x-logorhythms-request-id"]
    row = await pipeline.exchange(request_id, "request_headers, client_key_fingerprint")
    assert row["request_headers"]["authorization"].startswith("Bearer fp:")
    assert row["client_key_fingerprint"].startswith("fp:")

    consumer = AIOKafkaConsumer(
        pipeline.topic, bootstrap_servers=pipeline.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        everything = bytearray()
        batches = await consumer.getmany(timeout_ms=5000)
        for records in batches.values():
            for record in records:
                everything += (record.key or b"") + record.value
    finally:
        await consumer.stop()
    assert request_id.encode() in everything
    for secret in (CLIENT_KEY, SERVICE_KEY):
        assert secret.encode() not in everything

    for table in ("requests_raw", "chunks_raw", "completions_raw", "exchanges"):
        dump = await pipeline.clickhouse.raw(f"SELECT * FROM {table}", fmt="TSV")  # noqa: S608
        assert request_id.encode() in dump or table == "chunks_raw"
        for secret in (CLIENT_KEY, SERVICE_KEY):
            assert secret.encode() not in dump, f"{secret} leaked into {table}"
    assert orjson.loads(sent[0])["model"] == "gpt-4o-mini"
