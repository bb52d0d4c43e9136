"""A small OpenAI- and Anthropic-compatible upstream speaking the real wire protocols.

Used by `make up` when no real provider key is configured (so the pipeline can be tried on a
machine without internet) and by the tests. It answers by echoing the last user message word by
word. Request headers steer it, so tests can provoke what real providers do:

- ``x-fake-chunks``: number of content pieces (default: one per word)
- ``x-fake-delay-ms``: pause between SSE events
- ``x-fake-status``: answer with this HTTP error status and a provider-shaped error body
- ``x-fake-stall-after``: stop sending (but keep the connection open) after N events
- ``x-fake-reset-after``: drop the connection after N events
- ``x-fake-error-in-stream``: send an error event after the first content event
- ``x-fake-echo-auth``: answer 401 with the credentials received (Authorization, x-api-key, query)
  echoed in the error message, as real providers do with "Incorrect API key provided: sk-…"
- ``x-fake-redirect``: answer 302 with this Location (a proxy must not follow it)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

_counter = 0


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What the fake upstream was sent, so tests can check what the proxy forwarded."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


RECEIVED = web.AppKey("received", list[ReceivedRequest])


def _next_id(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{_counter:08d}"


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    prompt = body.get("input") or body.get("prompt")
    return prompt if isinstance(prompt, str) else "hello"


def _pieces(text: str, count: int | None) -> list[str]:
    words = [w + " " for w in f"Echo: {text}".split(" ")]
    words[-1] = words[-1].rstrip()
    if count is None or count <= 0:
        return words
    return [words[i % len(words)] for i in range(count)]


def _header_int(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


async def _maybe_fail(request: web.Request, dialect: str) -> web.Response | None:
    status = _header_int(request, "x-fake-status")
    echo = request.headers.get("x-fake-echo-auth") is not None
    if status is None and not echo:
        return None
    if echo:
        status = status or 401
        received = [request.headers.get(h, "") for h in ("Authorization", "x-api-key")]
        message = (
            f"Incorrect API key provided: {' '.join(received)} (query: {request.query_string})"
        )
    else:
        message = f"fake upstream error {status}"
    assert status is not None
    if dialect == "anthropic":
        kind = "authentication_error" if echo else "overloaded_error"
        body = {
            "type": "error",
            "error": {"type": kind, "message": message if echo else "Overloaded"},
        }
    else:
        body = {"error": {"message": message, "type": "server_error",
                          "param": None, "code": None}}  # fmt: skip
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json",
        headers={"x-request-id": _next_id("req")},
    )  # fmt: skip


class _Sse:
    """Writes SSE frames with the pacing and faults the request asked for."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.sent = 0
        self.delay = (_header_int(request, "x-fake-delay-ms") or 0) / 1000
        self.stall_after = _header_int(request, "x-fake-stall-after")
        self.reset_after = _header_int(request, "x-fake-reset-after")

    async def send(self, frame: bytes) -> None:
        if self.stall_after is not None and self.sent >= self.stall_after:
            await asyncio.sleep(3600)
        if self.reset_after is not None and self.sent >= self.reset_after:
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        if self.sent and self.delay:
            await asyncio.sleep(self.delay)
        await self.response.write(frame)
        self.sent += 1


async def _start_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                 "x-request-id": _next_id("req")},
    )  # fmt: skip
    await response.prepare(request)
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    location = request.headers.get("x-fake-redirect")
    if location is not None:
        return web.Response(status=302, headers={"Location": location})
    failed = await _maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    model = body.get("model", "fake-model")
    pieces = _pieces(_last_user_text(body), _header_int(request, "x-fake-chunks"))
    completion_id = _next_id("chatcmpl")
    created = int(time.time())
    prompt_tokens = len(_last_user_text(body).split())
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
             "total_tokens": prompt_tokens + len(pieces)}  # fmt: skip
    if not body.get("stream"):
        text = "".join(pieces)
        doc = {
            "id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }  # fmt: skip
        return web.Response(
            body=orjson.dumps(doc), content_type="application/json",
            headers={"x-request-id": _next_id("req")},
        )  # fmt: skip
    response = await _start_sse(request)
    sse = _Sse(request, response)

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        doc = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
               "model": model, "choices": choices, **extra}  # fmt: skip
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    await sse.send(frame([{"index": 0, "delta": {"role": "assistant", "content": ""},
                           "finish_reason": None}]))  # fmt: skip
    for number, piece in enumerate(pieces):
        await sse.send(frame([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        if number == 0 and request.headers.get("x-fake-error-in-stream"):
            error = {"error": {"message": "The server had an error", "type": "server_error"}}
            await sse.send(b"data: " + orjson.dumps(error) + b"\n\n")
            await response.write_eof()
            return response
    await sse.send(frame([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if (body.get("stream_options") or {}).get("include_usage"):
        await sse.send(frame([], usage=usage))
    await sse.send(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[RECEIVED].append(
        ReceivedRequest(
            request.method,
            request.path,
            request.query_string,
            list(request.headers.items()),
            await request.read(),
        )
    )
    return await handler(request)


def create_fake_upstream() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_record])
    app[RECEIVED] = []
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    web.run_app(create_fake_upstream(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
