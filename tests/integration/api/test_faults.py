"""Upstream faults (fault matrix rows U1-U5, kept in tests/README.md) and client faults (L1-L2):
what the client got, and what landed in ClickHouse. Timeouts are set small so each case takes
well under a second of waiting.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from proxy.settings import Provider, Secret
from tests.integration.api.conftest import CLIENT_KEY, REQUEST_ID
from tests.integration.conftest import Pipeline, ProxyFactory

FAST = {
    "upstream_first_byte_timeout_s": 0.5,
    "upstream_read_timeout_s": 0.5,
    "client_write_timeout_s": 0.5,
}
# One request of each streaming endpoint: (path, JSON body). Anthropic needs its version header.
STREAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True,
         "messages": [{"role": "user", "content": "one two three four five"}]},
    ),
    "completions": (
        "/v1/completions",
        {"model": "gpt-3.5-turbo-instruct", "stream": True, "prompt": "one two three four five"},
    ),
    "responses": ("/v1/responses", {"model": "gpt-4.1", "stream": True, "input": "one two three"}),
    "messages": (
        "/v1/messages",
        {"model": "claude-test-model", "stream": True, "max_tokens": 64,
         "messages": [{"role": "user", "content": "one two three four five"}]},
    ),
}  # fmt: skip


@dataclass
class Received:
    status: int
    headers: dict[str, str]
    body: bytes
    error: BaseException | None

    @property
    def request_id(self) -> str:
        return self.headers[REQUEST_ID]


async def call(pipeline: Pipeline, path: str, body: dict[str, Any], **fake: str | int) -> Received:
    """POST with a raw client and read until the end or the connection breaks."""
    headers = {
        "Authorization": f"Bearer {CLIENT_KEY}",
        "anthropic-version": "2023-06-01",
        **{f"x-fake-{k.replace('_', '-')}": str(v) for k, v in fake.items()},
    }
    if not path.startswith("/v1/messages"):
        del headers["anthropic-version"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{pipeline.proxy_url}{path}", json=body, headers=headers) as response,
    ):
        received = bytearray()
        error: BaseException | None = None
        try:
            async for data in response.content.iter_any():
                received += data
        except aiohttp.ClientPayloadError as exc:
            error = exc
        return Received(response.status, dict(response.headers), bytes(received), error)


async def stored_chunks(pipeline: Pipeline, request_id: str, count: int) -> list[tuple[Any, ...]]:
    return await pipeline.wait_for(
        "SELECT seq, data, delivered FROM chunks_raw FINAL WHERE request_id = {id:String} "
        "ORDER BY seq",
        {"id": request_id},
        lambda rows: len(rows) == count,
        binary_columns=("data",),
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connect_refused_and_dns_failure_are_502_in_each_dialect(
    pipeline_factory: ProxyFactory,
) -> None:
    """Fault matrix U1: the upstream cannot be reached."""
    pipeline = await pipeline_factory(
        providers=(
            Provider(name="openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1",
                     api_key=Secret("sk-unused-canary-key")),
            Provider(name="anthropic", base_url="http://no-such-host.invalid",
                     dialect="anthropic"),
        ),
    )  # fmt: skip
    refused = await call(pipeline, *STREAMS["chat"])
    assert refused.status == 502
    assert orjson.loads(refused.body)["error"]["type"] == "upstream_error"
    unresolved = await call(pipeline, *STREAMS["messages"])
    assert unresolved.status == 502
    assert orjson.loads(unresolved.body)["type"] == "error"  # Anthropic's shape
    for got, host in ((refused, "127.0.0.1"), (unresolved, "no-such-host.invalid")):
        row = await pipeline.exchange(
            got.request_id, "status, upstream_status, outcome, error_message, duration_ms"
        )
        assert row["status"] == 502
        assert row["upstream_status"] == 0
        assert row["outcome"] == "connect_error"
        assert host in row["error_message"]
        assert "sk-unused-canary-key" not in row["error_message"]
        assert row["duration_ms"] > 0


async def test_no_first_byte_in_time_is_504(api_factory: ProxyFactory) -> None:
    """Fault matrix U1: the upstream accepts but never answers."""
    pipeline = await api_factory(**FAST)
    for name, shape_key in (("chat", "error"), ("messages", "type")):
        got = await call(pipeline, *STREAMS[name], head_delay_ms=5000)
        assert got.status == 504
        assert shape_key in orjson.loads(got.body)
        row = await pipeline.exchange(got.request_id, "status, outcome, error_type, chunk_count")
        assert row == {
            "status": 504,
            "outcome": "upstream_timeout",
            "error_type": "first_byte_timeout",
            "chunk_count": 0,
        }


@pytest.mark.parametrize(("fault", "outcome"), [("stall", "upstream_timeout"),
                                                ("reset", "upstream_disconnect")])  # fmt: skip
async def test_stream_stalls_or_resets_after_three_events(
    api_factory: ProxyFactory, fault: str, outcome: str
) -> None:
    """Fault matrix U2 (stall) and U3 (reset) mid-stream."""
    pipeline = await api_factory(**FAST)
    knob = {"stall_after": 3} if fault == "stall" else {"reset_after": 3}
    for endpoint, request in STREAMS.items():
        got = await call(pipeline, *request, delay_ms=20, **knob)
        assert got.status == 200
        assert got.error is None  # the stream ends cleanly, with the API's own error event
        before_error, _, error_frame = got.body.rpartition(b"\n\n")[0].rpartition(b"\n\n")
        assert b"upstream_error" in error_frame
        if endpoint == "messages":
            assert error_frame.startswith(b"event: error\ndata: ")
        events = before_error.count(b"data: ")
        # A stall delivers all three events sent; a reset may lose the unread tail of them.
        assert events == 3 if fault == "stall" else 1 <= events <= 3, (endpoint, events)
        row = await pipeline.exchange(
            got.request_id, "outcome, chunk_count, usage_estimated, status, prompt_tokens"
        )
        assert row["outcome"] == outcome
        assert row["status"] == 200
        # Anthropic reports the prompt's size in message_start; the others only at the end.
        assert row["usage_estimated"] is (endpoint != "messages")
        chunks = await stored_chunks(pipeline, got.request_id, row["chunk_count"])
        assert b"".join(c[1] for c in chunks) == before_error + b"\n\n"
        assert all(c[2] for c in chunks)


async def test_malformed_events_pass_verbatim_and_are_counted(api: Pipeline) -> None:
    """Fault matrix U4: malformed SSE events."""
    got = await call(api, *STREAMS["chat"], malformed=1, delay_ms=5)
    assert b"data: {not json\n\n" in got.body
    assert b": keepalive\n\n" in got.body
    row = await api.exchange(
        got.request_id, "outcome, sse_parse_errors, response_text, done_marker, chunk_count"
    )
    assert row["outcome"] == "ok"
    assert row["sse_parse_errors"] == 1
    assert row["done_marker"] is True
    assert row["response_text"] == "Echo: one two three four five"
    chunks = await stored_chunks(api, got.request_id, row["chunk_count"])
    assert b"".join(c[1] for c in chunks) == got.body


async def test_error_event_in_stream_is_passed_on_and_recorded(api: Pipeline) -> None:
    """Fault matrix U5: the upstream reports an error inside a 200 stream."""
    for endpoint, request in STREAMS.items():
        got = await call(api, *request, error_in_stream=1, delay_ms=5)
        assert got.status == 200
        assert got.error is None
        row = await api.exchange(
            got.request_id,
            "outcome, error_message, chunk_count, provider_error_type, provider_error_code, "
            "provider_error_message",
        )
        assert row["outcome"] == "upstream_error_in_stream", endpoint
        assert row["error_message"] in {"The server had an error", "Overloaded"}
        assert row["provider_error_message"] == row["error_message"], endpoint
        # Each provider's own words: OpenAI's error type (its Responses API sends a code instead).
        assert (row["provider_error_type"], row["provider_error_code"]) == {
            "chat": ("server_error", ""),
            "completions": ("server_error", ""),
            "responses": ("", "server_error"),
            "messages": ("overloaded_error", ""),
        }[endpoint]
        chunks = await stored_chunks(api, got.request_id, row["chunk_count"])
        assert b"".join(c[1] for c in chunks) == got.body


async def test_client_cancelling_mid_stream_stops_the_upstream_read(api: Pipeline) -> None:
    """Fault matrix L1: the client goes away mid-stream."""
    async with openai.AsyncOpenAI(
        base_url=f"{api.proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "go on"}],
            stream=True,
            extra_headers={"x-fake-chunks": "500", "x-fake-delay-ms": "20"},
        )
        stream = raw.parse()
        got = []
        async for chunk in stream:
            got.append(chunk)
            if len(got) == 3:
                break
        await stream.close()
    assert len(got) == 3
    request_id = raw.headers[REQUEST_ID]
    row = await api.exchange(
        request_id,
        "outcome, chunk_count, bytes_out, usage_estimated, response_text, choices, "
        "upstream_response_text",
    )
    assert row["outcome"] == "client_disconnect"
    assert row["usage_estimated"] is True
    # Policy: the proxy stops reading (and so cancels) the upstream at the first failed write.
    assert 3 <= row["chunk_count"] < 100
    chunks = await stored_chunks(api, request_id, row["chunk_count"])
    assert [c[0] for c in chunks] == list(range(1, row["chunk_count"] + 1))
    assert [c[2] for c in chunks] == [True] * (row["chunk_count"] - 1) + [False]
    assert row["bytes_out"] == sum(len(c[1]) for c in chunks[:-1])
    # The text columns say what was written to the client; upstream_response_text adds the
    # chunk the proxy read but could not write.
    written = _chat_text(b"".join(c[1] for c in chunks[:-1]))
    lost = _chat_text(chunks[-1][1])
    assert lost
    assert row["response_text"] == written
    assert row["choices"] == [written]
    assert row["upstream_response_text"] == written + lost
    assert written.startswith("".join(c.choices[0].delta.content or "" for c in got))


def _chat_text(stream: bytes) -> str:
    """The text of a chat completion stream's (whole) events, as an SDK would join it."""
    text = []
    for line in stream.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:]).get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


async def test_slow_reader_is_dropped_at_the_write_deadline(api_factory: ProxyFactory) -> None:
    """Fault matrix L2: a client that stops reading."""
    pipeline = await api_factory(**FAST)
    path, body = STREAMS["chat"]
    headers = {"x-fake-chunks": "300", "x-fake-pad-bytes": str(64 * 1024)}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{pipeline.proxy_url}{path}", json=body, headers=headers) as response,
    ):
        # Read nothing: the client's buffers fill, then the proxy's write waits and times out.
        row = await pipeline.exchange(
            response.headers[REQUEST_ID], "outcome, chunk_count, bytes_out, status"
        )
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert row["outcome"] == "client_write_timeout"
    assert row["status"] == 200
    # The upstream was read only as far as the client took: 300 x 64 KiB were on offer.
    assert row["chunk_count"] < 250
    chunks = await stored_chunks(pipeline, response.headers[REQUEST_ID], row["chunk_count"])
    assert chunks[-1][2] is False
    assert all(c[2] for c in chunks[:-1])


async def test_slow_first_token_within_timeouts_is_not_cut(api_factory: ProxyFactory) -> None:
    """Between-chunk gaps under the timeout never end a stream, however long it runs."""
    # Gaps of 300 ms under 1 s timeouts: wide margins, so a busy CI machine cannot flake it.
    timeouts = {key: 1.0 for key in FAST}
    pipeline = await api_factory(**timeouts)
    got = await call(pipeline, *STREAMS["messages"], chunks=3, delay_ms=300, head_delay_ms=300)
    assert got.status == 200
    assert got.body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    row = await pipeline.exchange(got.request_id, "outcome, duration_ms")
    assert row["outcome"] == "ok"
    assert row["duration_ms"] > 1000  # longer than any single timeout


async def test_a_configured_total_timeout_ends_the_stream(api_factory: ProxyFactory) -> None:
    pipeline = await api_factory(upstream_total_timeout_s=0.6)
    got = await call(pipeline, *STREAMS["chat"], delay_ms=200)
    assert got.status == 200
    assert got.body.rstrip().endswith(b"}")  # the SSE error event, not [DONE]
    assert b"total timeout" in got.body
    row = await pipeline.exchange(got.request_id, "outcome, error_type")
    assert row == {"outcome": "upstream_timeout", "error_type": "total_timeout"}
