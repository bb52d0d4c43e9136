"""What every fake endpoint shares: ids, reading the request, the steering headers, SSE framing
and the faults a request can ask for."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

_counter = 0

Json = dict[str, Any]


def next_id(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{_counter:08d}"


# --- what to answer -----------------------------------------------------------------------------


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def last_user_text(body: Json) -> str:
    messages = body.get("messages")
    if messages is None and isinstance(body.get("input"), list):
        messages = body["input"]
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    prompt = body.get("input") or body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) else "hello"


def header_int(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def split_pieces(request: web.Request, text: str) -> list[str]:
    """The answer cut in pieces (one per word by default), as it is streamed."""
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    count = header_int(request, "x-fake-chunks")
    if count is not None and count > 0:
        words = [words[i % len(words)] for i in range(count)]
    pad = header_int(request, "x-fake-pad-bytes") or 0
    return [w + "x" * pad for w in words] if pad else words


def tool_arguments(text: str) -> list[str]:
    """A tool call's JSON arguments, cut in pieces as providers stream them."""
    arguments = orjson.dumps({"text": text}).decode()
    third = max(1, len(arguments) // 3)
    return [arguments[i : i + third] for i in range(0, len(arguments), third)]


def first_tool(body: Json) -> str | None:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            name = (tool.get("function") or {}).get("name") or tool.get("name")
            if isinstance(name, str):
                return name
    return None


def json_response(doc: Json, request_id: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc), content_type="application/json",
        headers=response_headers(request_id),
    )  # fmt: skip


def response_headers(request_id: str) -> dict[str, str]:
    """A provider's request id and rate-limit headers, which the proxy must capture."""
    if request_id.startswith("req_"):  # Anthropic's names
        return {"request-id": request_id, "anthropic-ratelimit-requests-limit": "1000",
                "anthropic-ratelimit-requests-remaining": "999"}  # fmt: skip
    return {"x-request-id": request_id, "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "999"}  # fmt: skip


def provider_request_id(dialect: str) -> str:
    return next_id("req_" if dialect == "anthropic" else "req")


def invalid_request(dialect: str, message: str, param: str | None = None) -> web.Response:
    """A 400 in the provider's own error shape: what OpenAI and Anthropic answer for a body they
    cannot read, so SDKs raise their bad-request error and do not retry."""
    request_id = provider_request_id(dialect)
    if dialect == "anthropic":
        body: Json = {"type": "error", "request_id": request_id,
                      "error": {"type": "invalid_request_error", "message": message}}  # fmt: skip
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                          "code": None}}  # fmt: skip
    return json_response(body, request_id, 400)


async def read_object(request: web.Request, dialect: str) -> Json | web.Response:
    """The request body as a JSON object, or the provider's 400 for anything else (multipart, an
    empty body, invalid JSON or UTF-8, a JSON array or scalar)."""
    if request.content_type.startswith("multipart/"):
        return invalid_request(
            dialect, f"Unsupported content type {request.content_type!r}: send application/json."
        )
    raw = await request.read()
    if not raw.strip():
        return invalid_request(
            dialect, "The request body is empty: send a JSON object (application/json)."
        )
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return invalid_request(
            dialect,
            "We could not parse the JSON body of your request: the API expects a JSON object, "
            "but what was sent was not valid JSON.",
        )
    if not isinstance(doc, dict):
        return invalid_request(
            dialect,
            f"Invalid type for the request body: expected an object, but got "
            f"{_json_kind(doc)} instead.",
        )
    for name, kinds in _FIELD_TYPES.items():
        value = doc.get(name)
        if value is not None and (
            not isinstance(value, kinds) or isinstance(value, bool) != (bool in kinds)
        ):
            return invalid_request(
                dialect,
                f"Invalid type for '{name}': expected {' or '.join(k.__name__ for k in kinds)}, "
                f"but got {_json_kind(value)} instead.",
                param=name,
            )
    return doc


# The fields every endpoint reads, with the JSON types providers accept for them.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "messages": (list,), "stream": (bool,), "n": (int,), "max_tokens": (int,),
    "tools": (list,), "input": (str, list), "prompt": (str, list), "system": (str, list),
}  # fmt: skip


def _json_kind(doc: Any) -> str:
    if isinstance(doc, list):
        return "an array"
    if isinstance(doc, str):
        return "a string"
    if isinstance(doc, dict):
        return "an object"
    if doc is None:
        return "null"
    return "a boolean" if isinstance(doc, bool) else "a number"


async def maybe_fail(request: web.Request, dialect: str) -> web.Response | None:
    location = request.headers.get("x-fake-redirect")
    if location is not None:
        return web.Response(status=302, headers={"Location": location})
    status = header_int(request, "x-fake-status")
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
    response = json_response(body, provider_request_id(dialect), status)
    if status == 429:
        response.headers["retry-after"] = "1"
    return response


# --- streaming with faults ----------------------------------------------------------------------


async def pause(request: web.Request, seconds: float) -> None:
    """Sleep, but stop once the client has gone (so a stalled handler never outlives it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if request.transport is None or request.transport.is_closing():
            raise asyncio.CancelledError
        await asyncio.sleep(min(0.05, deadline - time.monotonic()))


def sse(doc: Json, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(doc) + b"\n\n"


async def stream_events(
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
                 **response_headers(provider_request_id(dialect))},
    )  # fmt: skip
    await response.prepare(request)
    delay = (header_int(request, "x-fake-delay-ms") or 0) / 1000
    stall_after = header_int(request, "x-fake-stall-after")
    reset_after = header_int(request, "x-fake-reset-after")
    for sent, frame in enumerate(frames):
        if sent and delay:
            await asyncio.sleep(delay)
        if stall_after is not None and sent >= stall_after:
            await pause(request, 3600)
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


def openai_error_frame() -> bytes:
    return sse({"error": {"message": "The server had an error", "type": "server_error"}})


# --- OpenAI: chat completions and legacy completions --------------------------------------------


def usage_doc(prompt: str, pieces: list[str], n: int) -> Json:
    prompt_tokens = len(prompt.split())
    completion = len(pieces) * n
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}  # fmt: skip


def echo_text(text: str, body: Json | None = None) -> str:
    fmt = (body or {}).get("response_format") or {}
    if fmt.get("type") in {"json_object", "json_schema"}:  # JSON mode
        return orjson.dumps({"echo": text}).decode()
    return f"Echo: {text}"


def logprobs_doc(piece: str) -> Json:
    return {"content": [{"token": piece, "logprob": -0.25, "bytes": list(piece.encode()),
                         "top_logprobs": []}], "refusal": None}  # fmt: skip
