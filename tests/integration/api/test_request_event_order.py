"""The request event is built while the upstream works (large bodies hashed in a worker thread),
yet it stays the exchange's first event on its partition, is always captured, and holds no
credential; non-streamed responses reach the client byte for byte with the head coalesced."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from proxy.exchange import LARGE_BODY
from proxy.settings import Provider, Secret
from schemas import Codec, EventType
from tests.integration.conftest import SERVICE_KEY, Pipeline, ProxyFactory

CLIENT_KEY = "sk-client-canary-hotpath-41d7"
REQUEST_ID = "x-logorhythms-request-id"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def large_body(*, stream: bool) -> bytes:
    """A chat request above LARGE_BODY whose prompt carries the client's key and a credential
    member, so redaction and the threaded hash both have work to do."""
    prompt = ("lorem ipsum dolor sit amet " * (LARGE_BODY // 20)) + f" my key is {CLIENT_KEY}"
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": prompt}],
            "api_key": "sk-inline-member-secret-9a8b",
        }
    )


async def events_of(pipeline: Pipeline, request_id: str) -> list[tuple[EventType, dict[str, Any]]]:
    """Every event of one exchange, in partition order, read back from the topic."""
    codec = Codec()
    consumer = AIOKafkaConsumer(
        pipeline.topic, bootstrap_servers=pipeline.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[EventType, dict[str, Any]]] = []
    try:
        while not any(kind is EventType.COMPLETED for kind, _ in found):
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"no completed event for {request_id} on {pipeline.topic}"
            for records in batches.values():
                for record in records:
                    if record.key == request_id.encode():
                        decoded = codec.decode(record.value)
                        found.append((decoded.type, decoded.record))
    finally:
        await consumer.stop()
    return found


async def post(pipeline: Pipeline, body: bytes, **headers: str) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{pipeline.proxy_url}/v1/chat/completions",
            data=body,
            headers={
                "Authorization": f"Bearer {CLIENT_KEY}",
                "Content-Type": "application/json",
                **headers,
            },
        ) as response,
    ):
        return response.status, response.headers[REQUEST_ID], await response.read()


async def test_large_streamed_body_request_event_first_hashed_and_redacted(
    pipeline: Pipeline,
) -> None:
    body = large_body(stream=True)
    status, request_id, received = await post(pipeline, body)
    assert status == 200
    assert received.endswith(b"data: [DONE]\n\n")

    events = await events_of(pipeline, request_id)
    kinds = [kind for kind, _ in events]
    assert kinds[0] is EventType.REQUEST
    assert kinds[-1] is EventType.COMPLETED
    assert set(kinds[1:-1]) == {EventType.CHUNK}
    assert [r["seq"] for k, r in events if k is EventType.CHUNK] == list(range(1, len(kinds) - 1))
    request = events[0][1]
    assert request["body_size"] == len(body)
    stored = request["body"]
    assert CLIENT_KEY.encode() not in stored
    assert b"sk-inline-member-secret-9a8b" not in stored
    assert b"fp:" in stored
    if not request["body_truncated"]:
        assert request["body_sha256"] == hashlib.sha256(stored).hexdigest()
    assert len(request["body_sha256"]) == 64
    # The upstream got the client's bytes unchanged (only the key swapped for the service's).
    assert pipeline.upstream.received[-1].body == body


async def test_large_body_to_an_unreachable_upstream_still_has_its_request_event_first(
    pipeline_factory: ProxyFactory,
) -> None:
    pipeline = await pipeline_factory(
        providers=(
            Provider(
                name="openai",
                base_url=f"http://127.0.0.1:{_closed_port()}/v1",
                api_key=Secret(SERVICE_KEY),
            ),
        )
    )
    status, request_id, received = await post(pipeline, large_body(stream=False))
    assert status == 502
    assert request_id.encode() in received

    events = await events_of(pipeline, request_id)
    assert [kind for kind, _ in events] == [EventType.REQUEST, EventType.COMPLETED]
    assert events[0][1]["body_size"] > LARGE_BODY
    assert len(events[0][1]["body_sha256"]) == 64
    assert events[1][1]["outcome"] == "connect_error"


async def test_upstream_error_status_with_a_small_body_is_captured_in_order(
    pipeline: Pipeline,
) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
    status, request_id, received = await post(pipeline, body, **{"x-fake-status": "429"})
    assert status == 429
    events = await events_of(pipeline, request_id)
    kinds = [kind for kind, _ in events]
    assert kinds[0] is EventType.REQUEST
    assert kinds[-1] is EventType.COMPLETED
    assert b"".join(r["data"] for k, r in events if k is EventType.CHUNK) == received
    assert events[0][1]["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_sized_response_reaches_the_client_byte_for_byte(pipeline: Pipeline) -> None:
    """The head goes out with the first body bytes: same status, headers and body as direct."""
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"three words here"}]}'
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{pipeline.upstream.url}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as direct:
            direct_body = await direct.read()
            direct_type = direct.headers["Content-Type"]
        async with session.post(
            f"{pipeline.proxy_url}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"},
        ) as proxied:
            proxied_body = await proxied.read()
            assert proxied.status == direct.status == 200
            assert proxied.headers["Content-Type"] == direct_type
            assert int(proxied.headers["Content-Length"]) == len(proxied_body)
            assert "Transfer-Encoding" not in proxied.headers
    # The fake answers with a fresh id and timestamp each time: compare what must be equal.
    direct_doc, proxied_doc = orjson.loads(direct_body), orjson.loads(proxied_body)
    assert proxied_doc["choices"] == direct_doc["choices"]
    assert proxied_doc["usage"] == direct_doc["usage"]
