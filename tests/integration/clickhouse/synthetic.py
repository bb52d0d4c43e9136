"""Synthetic exchanges as the proxy would publish them: request, chunks, completed events.

The events are built with the proxy's own event builders and the shared codec, so the loader sees
exactly what production sends; only the wire protocol of the upstream is simulated.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from proxy.capture import CapturedRequest, chunk_event, completed_event, request_event
from schemas import Codec, EventType

MS = 1_000_000  # nanoseconds in a millisecond


def uuid7(unix_ms: int, salt: str) -> str:
    """A deterministic UUIDv7 for ``unix_ms``: the same salt always gives the same id."""
    rand = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:10])
    value = unix_ms << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One exchange, described the way an analyst would think of it."""

    request_id: str
    received_at_ms: int
    model: str = "gpt-4o-mini"
    provider: str = "openai"
    dialect: str = "openai"
    endpoint: str = "/v1/chat/completions"
    stream: bool = True
    peer_ip: str = "10.0.0.5"
    forwarded_for: str | None = None
    client_ip: str = "10.0.0.5"
    user_agent: str = "OpenAI/Python 1.50.0"
    system_prompt: str = "You are terse."
    user_text: str = "hello"
    answer: str = "Hi there, friend"
    temperature: float | None = None
    max_tokens: int | None = None
    tools: tuple[str, ...] = ()  # function names
    tool_call: str | None = None  # name of the function the model calls
    status: int = 200
    outcome: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    usage: tuple[int, int] | None = (12, 5)  # (prompt, completion) as the provider reports
    cached_tokens: int | None = None
    ttfb_ms: int = 100
    gap_ms: Sequence[int] = (20, 20, 20)  # between consecutive chunks of a stream
    undelivered: int = 0  # the last chunks read from the upstream but not written to the client

    def request_body(self) -> bytes:
        body: dict[str, Any] = {"model": self.model, "stream": self.stream}
        if self.dialect == "anthropic":
            body["system"] = self.system_prompt
            body["messages"] = [{"role": "user", "content": self.user_text}]
            body["max_tokens"] = self.max_tokens or 1024
        else:
            body["messages"] = [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": self.user_text},
            ]
            if self.max_tokens is not None:
                body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": name, "parameters": {}}}
                for name in self.tools
            ]
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    def response_chunks(self) -> list[bytes]:
        """The response bytes as read from upstream, one element per read."""
        usage = None
        if self.usage is not None:
            usage = {
                "prompt_tokens": self.usage[0],
                "completion_tokens": self.usage[1],
                "total_tokens": sum(self.usage),
            }
            if self.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.status >= 400:
            limited = self.status == 429
            error = {"message": self.error_message or "failed", "param": None,
                     "type": "requests" if limited else "server_error",
                     "code": "rate_limit_exceeded" if limited else None}  # fmt: skip
            return [orjson.dumps({"error": error})]
        if self.dialect == "anthropic":
            doc: dict[str, Any] = {
                "id": f"msg_{self.request_id[-8:]}",
                "type": "message",
                "model": self.model,
                "content": [{"type": "text", "text": self.answer}],
                "stop_reason": "end_turn",
            }
            if self.usage is not None:
                doc["usage"] = {"input_tokens": self.usage[0], "output_tokens": self.usage[1]}
            return [orjson.dumps(doc)]
        if not self.stream:
            message: dict[str, Any] = {"role": "assistant", "content": self.answer}
            if self.tool_call:
                message["tool_calls"] = [_tool_call(self.tool_call)]
            doc = {
                "id": f"chatcmpl-{self.request_id[-8:]}",
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if self.tool_call else "stop",
                    }
                ],
            }
            if usage is not None:
                doc["usage"] = usage
            return [orjson.dumps(doc)]
        return self._sse(usage)

    def _sse(self, usage: dict[str, Any] | None) -> list[bytes]:
        base = {"id": f"chatcmpl-{self.request_id[-8:]}", "model": self.model}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        words = self.answer.split(" ")
        deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        if self.tool_call:
            deltas.append({"tool_calls": [{"index": 0, **_tool_call(self.tool_call)}]})
        events = [{**base, "choices": [{"index": 0, "delta": d}]} for d in deltas]
        finish = "tool_calls" if self.tool_call else "stop"
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if usage is not None:
            events.append({**base, "choices": [], "usage": usage})
        lines = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
        lines.append(b"data: [DONE]\n\n")
        return lines

    def events(self) -> list[tuple[EventType, dict[str, Any]]]:
        body = self.request_body()
        headers = [
            {"name": "content-type", "value": "application/json"},
            {"name": "user-agent", "value": self.user_agent},
            {"name": "authorization", "value": "Bearer fp:0123456789abcdef01234567"},
        ]
        if self.forwarded_for is not None:
            headers.append({"name": "x-forwarded-for", "value": self.forwarded_for})
        captured = CapturedRequest(
            request_id=self.request_id,
            received_at_us=self.received_at_ms * 1000,
            method="POST",
            path=self.endpoint,
            query="",
            headers=headers,
            peer_ip=self.peer_ip,
            forwarded_for=self.forwarded_for,
            client_ip=self.client_ip,
            client_key_fingerprint="fp:0123456789abcdef01234567",
            body=body,
            max_body_in_event=1024 * 1024,
            model_requested=self.model,
            stream=self.stream,
            endpoint=self.endpoint,
            dialect=self.dialect,
            provider=self.provider,
            upstream_url=f"https://api.{self.provider}.example{self.endpoint}",
            model_sent=self.model,
            proxy_instance="proxy-test",
        )
        request = request_event(captured)
        out: list[tuple[EventType, dict[str, Any]]] = [(EventType.REQUEST, request)]
        offset_ns = self.ttfb_ms * MS
        data = self.response_chunks()
        for seq, piece in enumerate(data, start=1):
            out.append(
                (
                    EventType.CHUNK,
                    chunk_event(
                        request_id=self.request_id,
                        seq=seq,
                        offset_ns=offset_ns,
                        data=piece,
                        max_bytes=1024 * 1024,
                        delivered=seq <= len(data) - self.undelivered,
                    ),
                )
            )
            offset_ns += self.gap_ms[min(seq - 1, len(self.gap_ms) - 1)] * MS
        duration_ns = offset_ns
        completed = completed_event(
            request_id=self.request_id,
            status=self.status,
            outcome=self.outcome,
            error_type=self.error_type,
            error_message=self.error_message,
            upstream_status=self.status,
            response_headers={"x-request-id": f"req_{self.request_id[-12:]}"},
            ttfb_ns=self.ttfb_ms * MS,
            duration_ns=duration_ns,
            bytes_in=len(body),
            bytes_out=sum(len(d) for d in data),
            chunk_count=len(data),
        )
        completed["completed_at_us"] = (self.received_at_ms * MS + duration_ns) // 1000
        out.append((EventType.COMPLETED, completed))
        return out

    def replace(self, **changes: Any) -> Exchange:
        return dataclasses.replace(self, **changes)


def _tool_call(name: str) -> dict[str, Any]:
    return {
        "id": f"call_{name}",
        "type": "function",
        "function": {"name": name, "arguments": '{"q": 1}'},
    }


def encoded(exchanges: Sequence[Exchange], codec: Codec | None = None) -> list[tuple[str, bytes]]:
    """(key, value) pairs of every event of the exchanges, in publication order."""
    codec = codec or Codec()
    return [
        (x.request_id, codec.encode(kind, event)) for x in exchanges for kind, event in x.events()
    ]


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
    """Publish (key, value) pairs and wait until the broker acknowledged every one."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in messages]
        for future in futures:
            await future
    finally:
        await producer.stop()
