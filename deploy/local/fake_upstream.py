"""A small OpenAI- and Anthropic-compatible upstream speaking the real wire protocols.

Used by `make up` when no real provider key is configured (so the pipeline can be tried on a
machine without internet) and by the tests. It answers by echoing the last user message word by
word, on every endpoint the proxy serves: chat completions (tool calls streamed in pieces, JSON
mode, ``n`` > 1, logprobs, ``stream_options.include_usage``), legacy completions, embeddings
(float or base64), the Responses API (with its SSE event types), models, files, and Anthropic
Messages (its SSE event types, tool use, ``count_tokens``). Request headers steer it, so tests can
provoke what real providers do, on every streaming endpoint alike:

- ``x-fake-chunks``: number of content pieces (default: one per word)
- ``x-fake-pad-bytes``: append this many bytes of padding to every content piece
- ``x-fake-delay-ms``: pause between SSE events
- ``x-fake-head-delay-ms``: pause before the response head (any endpoint)
- ``x-fake-status``: answer with this HTTP error status and a provider-shaped error body
- ``x-fake-stall-after``: stop sending (but keep the connection open) after N events
- ``x-fake-reset-after``: drop the connection after N events
- ``x-fake-error-in-stream``: send the dialect's error event after the first content event
- ``x-fake-malformed``: send a keep-alive comment and an event with invalid JSON after the first
  content event
- ``x-fake-echo-auth``: answer 401 with the credentials received (Authorization, x-api-key, query)
  echoed in the error message, as real providers do with "Incorrect API key provided: sk-…"
- ``x-fake-redirect``: answer 302 with this Location (a proxy must not follow it)
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

_counter = 0

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What the fake upstream was sent, so tests can check what the proxy forwarded."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    peer_port: int = 0  # the proxy's side of the connection: equal ports mean a reused one


RECEIVED = web.AppKey("received", list[ReceivedRequest])


def _next_id(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{_counter:08d}"


# --- what to answer -----------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _last_user_text(body: Json) -> str:
    messages = body.get("messages")
    if messages is None and isinstance(body.get("input"), list):
        messages = body["input"]
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    prompt = body.get("input") or body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) else "hello"


def _header_int(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def _pieces(request: web.Request, text: str) -> list[str]:
    """The answer cut in pieces (one per word by default), as it is streamed."""
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    count = _header_int(request, "x-fake-chunks")
    if count is not None and count > 0:
        words = [words[i % len(words)] for i in range(count)]
    pad = _header_int(request, "x-fake-pad-bytes") or 0
    return [w + "x" * pad for w in words] if pad else words


def _tool_arguments(text: str) -> list[str]:
    """A tool call's JSON arguments, cut in pieces as providers stream them."""
    arguments = orjson.dumps({"text": text}).decode()
    third = max(1, len(arguments) // 3)
    return [arguments[i : i + third] for i in range(0, len(arguments), third)]


def _first_tool(body: Json) -> str | None:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            name = (tool.get("function") or {}).get("name") or tool.get("name")
            if isinstance(name, str):
                return name
    return None


def _json_response(doc: Json, request_id: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc), content_type="application/json",
        headers=_headers(request_id),
    )  # fmt: skip


def _headers(request_id: str) -> dict[str, str]:
    """A provider's request id and rate-limit headers, which the proxy must capture."""
    if request_id.startswith("req_"):  # Anthropic's names
        return {"request-id": request_id, "anthropic-ratelimit-requests-limit": "1000",
                "anthropic-ratelimit-requests-remaining": "999"}  # fmt: skip
    return {"x-request-id": request_id, "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "999"}  # fmt: skip


def _request_id(dialect: str) -> str:
    return _next_id("req_" if dialect == "anthropic" else "req")


async def _maybe_fail(request: web.Request, dialect: str) -> web.Response | None:
    location = request.headers.get("x-fake-redirect")
    if location is not None:
        return web.Response(status=302, headers={"Location": location})
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
        kind = "authentication_error"
    else:
        assert status is not None
        message = f"fake upstream error {status}" if dialect == "openai" else f"fake {status}"
        kind = "rate_limit_error" if status == 429 else "overloaded_error"
    if dialect == "anthropic":
        body: Json = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": "server_error", "param": None,
                          "code": None}}  # fmt: skip
    response = _json_response(body, _request_id(dialect), status)
    if status == 429:
        response.headers["retry-after"] = "1"
    return response


# --- streaming with faults ----------------------------------------------------------------------


async def _pause(request: web.Request, seconds: float) -> None:
    """Sleep, but stop once the client has gone (so a stalled handler never outlives it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if request.transport is None or request.transport.is_closing():
            raise asyncio.CancelledError
        await asyncio.sleep(min(0.05, deadline - time.monotonic()))


def _sse(doc: Json, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(doc) + b"\n\n"


async def _stream(
    request: web.Request, dialect: str, frames: list[bytes], error: bytes, *, opening: int
) -> web.StreamResponse:
    """Send SSE frames with the pacing and faults the request asked for.

    ``opening`` frames open the response before the first content frame; injected faults land
    right after that first content frame, the way real providers fail mid-answer.
    """
    cut = opening + 1
    if request.headers.get("x-fake-malformed"):
        frames = [*frames[:cut], b": keepalive\n\n", b"data: {not json\n\n", *frames[cut:]]
    if request.headers.get("x-fake-error-in-stream"):
        frames = [*frames[:cut], error]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                 **_headers(_request_id(dialect))},
    )  # fmt: skip
    await response.prepare(request)
    delay = (_header_int(request, "x-fake-delay-ms") or 0) / 1000
    stall_after = _header_int(request, "x-fake-stall-after")
    reset_after = _header_int(request, "x-fake-reset-after")
    for sent, frame in enumerate(frames):
        if sent and delay:
            await asyncio.sleep(delay)
        if stall_after is not None and sent >= stall_after:
            await _pause(request, 3600)
        if reset_after is not None and sent >= reset_after:
            # A TCP reset: the peer's kernel drops whatever its reader has not taken yet, so a
            # reader may see fewer than ``reset_after`` events, as with a real reset.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        try:
            await response.write(frame)
        except ConnectionResetError:  # the proxy cancelled the request, as a client may
            return response
    await response.write_eof()
    return response


def _openai_error_frame() -> bytes:
    return _sse({"error": {"message": "The server had an error", "type": "server_error"}})


# --- OpenAI: chat completions and legacy completions --------------------------------------------


def _usage(prompt: str, pieces: list[str], n: int) -> Json:
    prompt_tokens = len(prompt.split())
    completion = len(pieces) * n
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}  # fmt: skip


def _echo(text: str, body: Json | None = None) -> str:
    fmt = (body or {}).get("response_format") or {}
    if fmt.get("type") in {"json_object", "json_schema"}:  # JSON mode
        return orjson.dumps({"echo": text}).decode()
    return f"Echo: {text}"


def _logprobs(piece: str) -> Json:
    return {"content": [{"token": piece, "logprob": -0.25, "bytes": list(piece.encode()),
                         "top_logprobs": []}], "refusal": None}  # fmt: skip


async def chat_completions(request: web.Request) -> web.StreamResponse:
    failed = await _maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    model = body.get("model", "fake-model")
    user_text = _last_user_text(body)
    pieces = _pieces(request, _echo(user_text, body))
    n = body.get("n") or 1
    tool = _first_tool(body)
    completion_id = _next_id("chatcmpl")
    created = int(time.time())
    usage = _usage(user_text, pieces, n)
    if not body.get("stream"):
        choices = []
        for index in range(n):
            message: Json = {"role": "assistant", "content": "".join(pieces)}
            if tool is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{index}", "type": "function",
                     "function": {"name": tool, "arguments": "".join(_tool_arguments(user_text))}}
                ]}  # fmt: skip
            choices.append({"index": index, "message": message,
                            "finish_reason": "tool_calls" if tool else "stop",
                            "logprobs": _logprobs("".join(pieces)) if body.get("logprobs")
                            else None})  # fmt: skip
        return _json_response(
            {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
             "choices": choices, "usage": usage}, _request_id("openai"),
        )  # fmt: skip

    def frame(choices: list[Json], **extra: Any) -> bytes:
        return _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": choices, **extra})  # fmt: skip

    def deltas() -> Iterator[bytes]:
        yield frame([{"index": i, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None} for i in range(n)])  # fmt: skip
        if tool is not None:
            yield frame([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": 0, "id": "call_0", "type": "function",
                 "function": {"name": tool, "arguments": ""}}]}}])  # fmt: skip
            for part in _tool_arguments(user_text):
                yield frame([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": part}}]}}])  # fmt: skip
            yield frame([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
            return
        for piece in pieces:
            for index in range(n):
                choice: Json = {"index": index, "delta": {"content": piece}, "finish_reason": None}
                if body.get("logprobs"):
                    choice["logprobs"] = _logprobs(piece)
                yield frame([choice])
        yield frame([{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(n)])

    frames = list(deltas())
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append(frame([], usage=usage))
    frames.append(b"data: [DONE]\n\n")
    return await _stream(request, "openai", frames, _openai_error_frame(), opening=1)


async def completions(request: web.Request) -> web.StreamResponse:
    failed = await _maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    model = body.get("model", "fake-model")
    prompt = _last_user_text(body)
    pieces = _pieces(request, _echo(prompt))
    n = body.get("n") or 1
    completion_id = _next_id("cmpl")
    created = int(time.time())

    def logprobs(text: str) -> Json | None:
        if body.get("logprobs") is None:
            return None
        return {"tokens": [text], "token_logprobs": [-0.25], "top_logprobs": None,
                "text_offset": [0]}  # fmt: skip

    def doc(choices: list[Json], **extra: Any) -> Json:
        return {"id": completion_id, "object": "text_completion", "created": created,
                "model": model, "choices": choices, **extra}  # fmt: skip

    usage = _usage(prompt, pieces, n)
    if not body.get("stream"):
        text = "".join(pieces)
        choices = [{"index": i, "text": text, "finish_reason": "stop", "logprobs": logprobs(text)}
                   for i in range(n)]  # fmt: skip
        return _json_response(doc(choices, usage=usage), _request_id("openai"))
    frames = [_sse(doc([{"index": 0, "text": "", "finish_reason": None, "logprobs": None}]))]
    for piece in pieces:
        for i in range(n):
            choice = {"index": i, "text": piece, "finish_reason": None, "logprobs": logprobs(piece)}
            frames.append(_sse(doc([choice])))
    frames.append(_sse(doc([{"index": i, "text": "", "finish_reason": "stop", "logprobs": None}
                            for i in range(n)])))  # fmt: skip
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append(_sse(doc([], usage=usage)))
    frames.append(b"data: [DONE]\n\n")
    return await _stream(request, "openai", frames, _openai_error_frame(), opening=1)


# --- OpenAI: embeddings, models, files ----------------------------------------------------------


def _vector(text: str, dimensions: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 997) / 997 for i in range(dimensions)]


async def embeddings(request: web.Request) -> web.StreamResponse:
    failed = await _maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
    dimensions = body.get("dimensions") or 8
    data = []
    for index, text in enumerate(texts):
        vector = _vector(text, dimensions)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(t.split()) for t in texts)
    return _json_response(
        {"object": "list", "data": data, "model": body.get("model", "fake-embedding"),
         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, _request_id("openai"),
    )  # fmt: skip


async def models(request: web.Request) -> web.StreamResponse:
    if "anthropic-version" in request.headers:
        return _json_response(
            {"data": [{"type": "model", "id": "claude-fake", "display_name": "Claude Fake",
                       "created_at": "2025-01-01T00:00:00Z"}],
             "has_more": False, "first_id": "claude-fake", "last_id": "claude-fake"},
            _request_id("anthropic"),
        )  # fmt: skip
    return _json_response(
        {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0,
                                     "owned_by": "fake"}]}, _request_id("openai"),
    )  # fmt: skip


async def model(request: web.Request) -> web.StreamResponse:
    name = request.match_info["model"]
    return _json_response(
        {"id": name, "object": "model", "created": 0, "owned_by": "fake"}, _request_id("openai")
    )


async def files(request: web.Request) -> web.StreamResponse:
    return _json_response({"object": "list", "data": [], "has_more": False}, _request_id("openai"))


# --- OpenAI: the Responses API ------------------------------------------------------------------


async def responses(request: web.Request) -> web.StreamResponse:
    failed = await _maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    user_text = _last_user_text(body)
    pieces = _pieces(request, _echo(user_text))
    response_id, item_id = _next_id("resp"), _next_id("msg")
    text = "".join(pieces)
    usage = {"input_tokens": len(user_text.split()), "output_tokens": len(pieces),
             "total_tokens": len(user_text.split()) + len(pieces),
             "input_tokens_details": {"cached_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip

    def item(status: str, content: str | None) -> Json:
        part: Json = {"type": "output_text", "text": content, "annotations": [], "logprobs": []}
        parts = [] if content is None else [part]
        return {"id": item_id, "type": "message", "status": status, "role": "assistant",
                "content": parts}  # fmt: skip

    def response(status: str, output: list[Json], final_usage: Json | None) -> Json:
        return {"id": response_id, "object": "response", "created_at": int(time.time()),
                "status": status, "model": body.get("model", "fake-model"), "output": output,
                "usage": final_usage, "error": None, "incomplete_details": None,
                "instructions": body.get("instructions"), "metadata": {},
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "temperature": body.get("temperature", 1.0), "top_p": 1.0}  # fmt: skip

    done = response("completed", [item("completed", text)], usage)
    if not body.get("stream"):
        return _json_response(done, _request_id("openai"))
    events: list[Json] = [
        {"type": "response.created", "response": response("in_progress", [], None)},
        {"type": "response.in_progress", "response": response("in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": item("in_progress", None)},
        {"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        *({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
           "content_index": 0, "delta": piece, "logprobs": []} for piece in pieces),
        {"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
         "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}},
        {"type": "response.output_item.done", "output_index": 0, "item": item("completed", text)},
        {"type": "response.completed", "response": done},
    ]  # fmt: skip
    frames = [
        _sse({**event, "sequence_number": number}, event["type"])
        for number, event in enumerate(events)
    ]
    error = _sse(
        {"type": "error", "code": "server_error", "message": "The server had an error",
         "param": None, "sequence_number": len(events)}, "error",
    )  # fmt: skip
    return await _stream(request, "openai", frames, error, opening=4)


# --- Anthropic: Messages ------------------------------------------------------------------------


def _anthropic_guard(request: web.Request) -> web.Response | None:
    if "anthropic-version" not in request.headers:
        return _json_response(
            {"type": "error", "error": {"type": "invalid_request_error",
                                        "message": "anthropic-version: header is required"}},
            _request_id("anthropic"), 400,
        )  # fmt: skip
    return None


async def messages(request: web.Request) -> web.StreamResponse:
    failed = _anthropic_guard(request) or await _maybe_fail(request, "anthropic")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    user_text = _last_user_text(body)
    pieces = _pieces(request, _echo(user_text))
    tool = _first_tool(body)
    message_id = _next_id("msg")
    input_tokens = len(user_text.split())
    stop_reason = "tool_use" if tool else "end_turn"

    def message(content: list[Json], output_tokens: int, stop: str | None) -> Json:
        return {"id": message_id, "type": "message", "role": "assistant", "content": content,
                "model": body.get("model", "claude-fake"), "stop_reason": stop,
                "stop_sequence": None, "usage": {"input_tokens": input_tokens,
                                                 "output_tokens": output_tokens}}  # fmt: skip

    if not body.get("stream"):
        block: Json = {"type": "text", "text": "".join(pieces)}
        if tool is not None:
            block = {
                "type": "tool_use",
                "id": "toolu_0",
                "name": tool,
                "input": {"text": user_text},
            }
        return _json_response(message([block], len(pieces), stop_reason), _request_id("anthropic"))
    events: list[tuple[str, Json]] = [
        ("message_start", {"message": message([], 1, None)}),
    ]
    if tool is not None:
        events.append(("content_block_start", {"index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_0", "name": tool, "input": {}}}))  # fmt: skip
        events.extend(
            ("content_block_delta",
             {"index": 0, "delta": {"type": "input_json_delta", "partial_json": part}})
            for part in _tool_arguments(user_text)
        )  # fmt: skip
    else:
        events.append(
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        )
        events.extend(
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
            for piece in pieces
        )
    events.insert(2, ("ping", {}))  # real streams ping after the first block start
    events += [
        ("content_block_stop", {"index": 0}),
        ("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                           "usage": {"output_tokens": len(pieces)}}),
        ("message_stop", {}),
    ]  # fmt: skip
    frames = [_sse({"type": kind, **doc}, kind) for kind, doc in events]
    error = _sse(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
    )
    return await _stream(request, "anthropic", frames, error, opening=3)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    failed = _anthropic_guard(request) or await _maybe_fail(request, "anthropic")
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    words = sum(len(_content_text(m.get("content")).split()) for m in body.get("messages") or [])
    return _json_response({"input_tokens": words}, _request_id("anthropic"))


# --- the app ------------------------------------------------------------------------------------


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[RECEIVED].append(
        ReceivedRequest(
            request.method,
            request.path,
            request.query_string,
            list(request.headers.items()),
            await request.read(),
            (request.transport.get_extra_info("peername") or ("", 0))[1]
            if request.transport is not None
            else 0,
        )
    )
    head_delay_ms = _header_int(request, "x-fake-head-delay-ms")
    if head_delay_ms:
        await _pause(request, head_delay_ms / 1000)
    return await handler(request)


ROUTES: tuple[tuple[str, str, Callable[[web.Request], Any]], ...] = (
    ("POST", "/v1/chat/completions", chat_completions),
    ("POST", "/v1/completions", completions),
    ("POST", "/v1/embeddings", embeddings),
    ("POST", "/v1/responses", responses),
    ("GET", "/v1/models", models),
    ("GET", "/v1/models/{model}", model),
    ("GET", "/v1/files", files),
    ("POST", "/v1/messages", messages),
    ("POST", "/v1/messages/count_tokens", count_tokens),
)


def create_fake_upstream() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_record])
    app[RECEIVED] = []
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake OpenAI/Anthropic upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    web.run_app(create_fake_upstream(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
